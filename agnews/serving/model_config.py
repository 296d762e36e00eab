"""Which models to serve and which of their versions: from flags, or from a ModelServerConfig file.

The file is TF Serving's `--model_config_file` text proto, parsed with its own message, so one
file configures either server. Flags alone mean one model, newest version, as TF Serving's
`--model_name`/`--model_base_path` do.
"""

from __future__ import annotations

import dataclasses
import os

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

# The ModelServerConfig `agnews models` writes beside a serving directory (TF Serving's usual name).
CONFIG_FILE_NAME = "models.config"
# The registry's aliases, served as version labels: requests without a version or label go to
# STABLE, and a configured share of them to CANARY.
STABLE, CANARY = "stable", "canary"


def registry_config_path(serving_dir: str) -> str:
    """The ModelServerConfig the registry writes for the models pushed to `serving_dir`."""
    return os.path.join(os.path.dirname(serving_dir.rstrip("/")), CONFIG_FILE_NAME)


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


def labelled_config_text(name: str, base_path: str, labels: dict[str, int]) -> str:
    """A ModelServerConfig serving exactly the labelled versions of one model, with their
    `version_labels` (TF Serving's text proto)."""
    config = model_server_config_pb2.ModelServerConfig()
    model = config.model_config_list.config.add(
        name=name, base_path=base_path, model_platform="tensorflow"
    )
    model.model_version_policy.specific.versions.extend(sorted(set(labels.values())))
    for label, version in sorted(labels.items()):
        model.version_labels[label] = version
    return text_format.MessageToString(config)


def write_atomically(path: str, text: str) -> None:
    """Writes `path` aside, then renames it into place: a server polling it reads the old file
    or the new one, never half of one."""
    import tensorflow as tf

    staging = f"{path}.tmp-{os.getpid()}"
    with tf.io.gfile.GFile(staging, "w") as handle:
        handle.write(text)
    tf.io.gfile.rename(staging, path, overwrite=True)


def read_config_file(path: str) -> list[ModelConfig]:
    import tensorflow as tf

    try:
        text = tf.io.gfile.GFile(path).read()
    except tf.errors.OpError as error:
        raise ValueError(f"cannot read {path}: {error.message}") from None
    try:
        return parse_config(text)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
