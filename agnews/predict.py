"""`agnews predict`: classifies raw text with a pushed SavedModel (no project code needed in it)."""

from __future__ import annotations

import contextlib

import tensorflow as tf

from agnews import versions
from components import features


@contextlib.contextmanager
def _without_graph_rewrites():
    """Grappler's graph rewrites delay a signature's first answer and save nothing on the one batch
    a one-shot prediction runs (the process's setting is restored after). For the same reason the
    version is loaded without its warmup requests."""
    before = tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer", False)
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    try:
        yield
    finally:
        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": before})


def predict(version_dir: str, titles: list[str], descriptions: list[str]) -> list[dict]:
    """One dict per example: title, label name, class id and probability per class name."""
    with _without_graph_rewrites():
        serve = versions.load(version_dir).signatures[features.SERVING_DEFAULT]
        outputs = serve(title=tf.constant(titles), description=tf.constant(descriptions))
    return [
        {
            "title": title,
            "label": label.decode(),
            "class_id": int(class_id),
            "probabilities": dict(
                zip(features.LABEL_NAMES, map(float, probabilities), strict=True)
            ),
        }
        for title, label, class_id, probabilities in zip(
            titles,
            outputs[features.LABEL_NAME_KEY].numpy(),
            outputs[features.CLASS_ID_KEY].numpy(),
            outputs[features.PROBABILITIES_KEY].numpy(),
            strict=True,
        )
    ]
