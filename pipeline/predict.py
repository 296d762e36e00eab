"""Loads a pushed SavedModel (no project code needed inside it) and classifies raw text."""
from __future__ import annotations

import os

import tensorflow as tf

from components import features


def model_versions(base_dir: str) -> list[int]:
    """The numeric version directories under `base_dir` that hold a SavedModel, oldest first."""
    names = [n.rstrip("/") for n in (tf.io.gfile.listdir(base_dir) if tf.io.gfile.isdir(base_dir) else [])]
    return sorted(int(n) for n in names
                  if n.isdigit() and tf.io.gfile.exists(os.path.join(base_dir, n, "saved_model.pb")))


def resolve_version_dir(model_dir: str) -> str:
    """`model_dir` itself if it holds a saved_model.pb, else its newest numeric version."""
    if tf.io.gfile.exists(os.path.join(model_dir, "saved_model.pb")):
        return model_dir
    versions = model_versions(model_dir)
    if not versions:
        raise FileNotFoundError(
            f"No SavedModel in {model_dir} or in a numeric version directory under it: "
            "run `agnews run` first or point --model at a pushed model.")
    return os.path.join(model_dir, str(versions[-1]))


def predict(version_dir: str, titles: list[str], descriptions: list[str]) -> list[dict]:
    """One dict per example: title, label name, class id and probability per class name."""
    serve = tf.saved_model.load(version_dir).signatures[features.SERVING_DEFAULT]
    outputs = serve(title=tf.constant(titles), description=tf.constant(descriptions))
    return [{
        "title": title,
        "label": label.decode(),
        "class_id": int(class_id),
        "probabilities": dict(zip(features.LABEL_NAMES, map(float, probabilities))),
    } for title, label, class_id, probabilities in zip(
        titles, outputs[features.LABEL_NAME_KEY].numpy(), outputs[features.CLASS_ID_KEY].numpy(),
        outputs[features.PROBABILITIES_KEY].numpy())]
