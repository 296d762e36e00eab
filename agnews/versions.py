"""A pushed model's versions: which are there, the newest, and loading one (warm or not).

TF Serving's layout (a base directory of numeric version directories, each a SavedModel with its
warmup requests in `assets.extra/`), read the same way by `predict`, `score` and the server.
"""

from __future__ import annotations

import os
from typing import Any

import tensorflow as tf

from components import features

WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"  # TF Serving's place for it


def model_versions(base_dir: str) -> list[int]:
    """The numeric version directories under `base_dir` that hold a SavedModel, oldest first."""
    names = [
        n.rstrip("/")
        for n in (tf.io.gfile.listdir(base_dir) if tf.io.gfile.isdir(base_dir) else [])
    ]
    return sorted(
        int(n)
        for n in names
        if n.isdigit() and tf.io.gfile.exists(os.path.join(base_dir, n, "saved_model.pb"))
    )


def resolve_version_dir(model_dir: str) -> str:
    """`model_dir` itself if it holds a saved_model.pb, else its newest numeric version."""
    if tf.io.gfile.exists(os.path.join(model_dir, "saved_model.pb")):
        return model_dir
    versions = model_versions(model_dir)
    if not versions:
        raise FileNotFoundError(
            f"No SavedModel in {model_dir} or in a numeric version directory under it: "
            "run `agnews run` first or point --model at a pushed model."
        )
    return os.path.join(model_dir, str(versions[-1]))


def warmup_requests(version_dir: str) -> list[tuple[str, dict]]:
    """(signature name, inputs) of each request in the version's TF Serving warmup file
    (`assets.extra/tf_serving_warmup_requests`), none when it has no such file."""
    from tensorflow_serving.apis import prediction_log_pb2

    path = os.path.join(version_dir, WARMUP_FILE)
    if not tf.io.gfile.exists(path):
        return []
    requests = []
    for record in tf.data.TFRecordDataset(path):
        request = prediction_log_pb2.PredictionLog.FromString(record.numpy()).predict_log.request
        requests.append(
            (
                request.model_spec.signature_name or features.SERVING_DEFAULT,
                {key: tf.constant(tf.make_ndarray(value)) for key, value in request.inputs.items()},
            )
        )
    return requests


def load(version_dir: str) -> Any:
    """The version's SavedModel object (it keeps its signatures' variables alive); ValueError when
    it has no serving_default signature, which every client of a pushed model calls."""
    model = tf.saved_model.load(version_dir)
    if features.SERVING_DEFAULT not in model.signatures:
        raise ValueError(f"{version_dir} has no {features.SERVING_DEFAULT} signature")
    return model


def warm(model: Any, version_dir: str) -> None:
    """Replays the version's warmup requests on its loaded `model`, as TF Serving does before it
    serves a version, so that no live request pays for the first calls' graph set-up."""
    for signature, inputs in warmup_requests(version_dir):
        if signature in model.signatures:
            model.signatures[signature](**inputs)


def load_warm(version_dir: str) -> Any:
    """load, then warm: the version ready to answer as the server would answer with it."""
    model = load(version_dir)
    warm(model, version_dir)
    return model


def copy_version(source: str, destination: str) -> None:
    """Copies a SavedModel directory to a new version directory, saved_model.pb last: readers
    (model_versions, so the server and TF Serving's own poll) count a version only once it holds
    one, so none loads half a copy, on any file system TensorFlow writes (gs:// has no rename)."""
    last = None
    for directory, _, files in tf.io.gfile.walk(source):
        target = os.path.join(destination, directory[len(source) :].lstrip("/"))
        tf.io.gfile.makedirs(target)
        for name in files:
            pair = (os.path.join(directory, name), os.path.join(target, name))
            if directory.rstrip("/") == source.rstrip("/") and name == "saved_model.pb":
                last = pair
            else:
                tf.io.gfile.copy(*pair, overwrite=True)
    if last is None:
        raise FileNotFoundError(f"no saved_model.pb in {source}")
    tf.io.gfile.copy(*last, overwrite=True)


def prune_versions(
    serving_dir: str, keep: int, protected: frozenset[int] | set[int] = frozenset()
) -> list[str]:
    """Deletes all but the newest `keep` numeric versions and the `protected` ones (a registry
    alias's); returns the deleted directories."""
    if keep < 1:
        raise ValueError("--keep must be at least 1: the newest version is always kept.")
    doomed = [
        f"{serving_dir}/{v}" for v in model_versions(serving_dir)[:-keep] if v not in protected
    ]
    for directory in doomed:
        tf.io.gfile.rmtree(directory)
    return doomed
