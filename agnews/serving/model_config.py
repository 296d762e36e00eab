"""Which models to serve and which of their versions: from flags, or from a ModelServerConfig file.

The file is TF Serving's `--model_config_file` text proto, parsed with its own message, so one
file configures either server. Flags alone mean one model, newest version, as TF Serving's
`--model_name`/`--model_base_path` do.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    name: str
    base_path: str
    policy: str = "latest"  # TF Serving's model_version_policy: latest, all or specific
    num_versions: int = 1  # latest N
    versions: tuple[int, ...] = ()  # specific
    labels: tuple[tuple[str, int], ...] = ()  # version_labels, sorted (stable, canary, ...)

    def aspired(self, available: list[int]) -> set[int]:
        """The versions this policy serves out of the numeric version directories found."""
        if self.policy == "all":
            return set(available)
        if self.policy == "specific":
            return set(self.versions) & set(available)
        return set(sorted(available)[-self.num_versions :])

    def label_version(self, label: str) -> int | None:
        return dict(self.labels).get(label)


def from_flags(name: str, base_path: str) -> list[ModelConfig]:
    return [ModelConfig(name=name, base_path=base_path)]


def _model_config(proto) -> ModelConfig:
    if proto.model_platform not in ("", "tensorflow"):
        raise ValueError(
            f"model {proto.name!r}: model_platform {proto.model_platform!r} is not "
            "supported (only tensorflow)"
        )
    if not proto.name or not proto.base_path:
        raise ValueError("every model needs a name and a base_path")
    policy = proto.model_version_policy
    kind = policy.WhichOneof("policy_choice") or "latest"
    num_versions = (
        policy.latest.num_versions if kind == "latest" and policy.latest.num_versions else 1
    )
    versions = tuple(sorted(policy.specific.versions)) if kind == "specific" else ()
    if kind == "specific" and not versions:
        raise ValueError(f"model {proto.name!r}: a specific policy needs at least one version")
    return ModelConfig(
        name=proto.name,
        base_path=proto.base_path,
        policy=kind,
        num_versions=num_versions,
        versions=versions,
        labels=tuple(sorted(proto.version_labels.items())),
    )


def parse_config(text: str) -> list[ModelConfig]:
    """The models of a ModelServerConfig text proto; ValueError says what is wrong in one line."""
    try:
        proto = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    except text_format.ParseError as error:
        raise ValueError(f"not a ModelServerConfig text proto: {error}") from None
    if proto.WhichOneof("config") == "custom_model_config":
        raise ValueError("custom_model_config is not supported; use model_config_list")
    models = [_model_config(model) for model in proto.model_config_list.config]
    names = [model.name for model in models]
    if not models:
        raise ValueError("model_config_list has no model")
    if len(set(names)) != len(names):
        raise ValueError(f"a model name appears twice: {sorted(names)}")
    return models


def read_config_file(path: str) -> list[ModelConfig]:
    try:
        text = tf.io.gfile.GFile(path).read()
    except tf.errors.OpError as error:
        raise ValueError(f"cannot read {path}: {error.message}") from None
    try:
        return parse_config(text)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
