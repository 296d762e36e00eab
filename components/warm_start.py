"""Warm start: a new model begins from the weights of an earlier one of the same kind.

The vocabularies change between data windows, so the vocabulary-indexed weights (the token
embedding, the n-gram weights of the linear part) are remapped by token with Keras's
`warmstart_embedding_matrix`: a token in both vocabularies keeps its trained row, a new token
keeps the new model's freshly initialised row. Every other variable is copied as it is.

The earlier weights are read from the SavedModel's checkpoint (its `variables/`), not by
loading the SavedModel: that would also load the Transform graph, for nothing.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from tensorflow.core.protobuf import trackable_object_graph_pb2
from tfx.utils import path_utils

from components import features

# In the exported model: which model kind (settings.MODEL_NAMES) it is. `assets.extra` is the
# SavedModel directory's place for files that go with the model but not into its graph; the
# servability gate and Pusher copy the whole directory, so a pushed model carries it too.
KIND_FILE = os.path.join("assets.extra", "agnews_model.json")
# signatures.export_serving_model tracks the model's variables, in `model.variables` order, as
# this attribute of the saved module; its checkpoint's object graph lists them with their names.
_WEIGHTS_ATTRIBUTE = "weights"
_OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"  # where tf.train.Checkpoint stores it


@dataclasses.dataclass(frozen=True)
class _Vocabulary:
    """How a vocabulary-indexed weight's rows map to a Transform vocabulary: `reserved` ids
    come first (padding, OOV), then one row per vocabulary entry, then `oov_buckets` rows."""

    name: str
    reserved: int
    oov_buckets: int

    def row_keys(self, entries: list[bytes]) -> list:
        """One key per row; the same key in two vocabularies means the same row's meaning."""
        return (
            [("reserved", i) for i in range(self.reserved)]
            + entries
            + [("oov", i) for i in range(self.oov_buckets)]
        )


# Embedding layers by their number of rows (preprocessing.preprocessing_fn builds both).
_VOCABULARIES = {
    features.VOCAB_SIZE: _Vocabulary(features.VOCAB_NAME, features.NUM_RESERVED_IDS, 0),
    features.NGRAM_VOCAB_SIZE: _Vocabulary(features.NGRAM_VOCAB_NAME, 0, 1),
}


def record_kind(export_dir: str, kind: str) -> None:
    """Writes which model kind the SavedModel in `export_dir` is."""
    path = os.path.join(export_dir, KIND_FILE)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, "w") as handle:
        json.dump({"model": kind}, handle)


def saved_model_dir(base_model: str) -> str | None:
    """The SavedModel directory of `base_model`: that directory itself (a pushed version), a
    Trainer Model artifact's serving model (what TFX passes as `fn_args.base_model` is already
    that), or the servability gate's stamped copy in its blessing; None when there is none."""
    for candidate in (
        base_model,
        path_utils.serving_model_path(base_model),
        path_utils.stamped_model_path(base_model),
    ):
        if tf.io.gfile.exists(os.path.join(candidate, tf.saved_model.SAVED_MODEL_FILENAME_PB)):
            return candidate
    return None


def _read_kind(export_dir: str) -> str | None:
    path = os.path.join(export_dir, KIND_FILE)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as handle:
        return json.load(handle).get("model")


def _read_vocabulary(path: str) -> list[bytes]:
    """A Transform vocabulary file's entries, most frequent first (as TFT reads it)."""
    with tf.io.gfile.GFile(path, "rb") as handle:
        return [line.rstrip(b"\n") for line in handle]


def _role(name: str) -> str:
    """A variable's name without Keras's per-process layer numbering ("lstm_3/.../kernel:0" ->
    "lstm/.../kernel"), which depends on how many models the process built before."""
    return re.sub(r"_\d+(?=/)", "", name.split(":")[0])


def _base_variables(export_dir: str) -> list[tuple[str, np.ndarray]]:
    """(name, value) of each model variable saved in `export_dir`, in `model.variables` order."""
    reader = tf.train.load_checkpoint(
        os.path.join(
            export_dir, tf.saved_model.VARIABLES_DIRECTORY, tf.saved_model.VARIABLES_FILENAME
        )
    )
    graph = trackable_object_graph_pb2.TrackableObjectGraph.FromString(
        reader.get_tensor(_OBJECT_GRAPH_KEY)
    )
    (weights,) = (
        child.node_id for child in graph.nodes[0].children if child.local_name == _WEIGHTS_ATTRIBUTE
    )
    variables = []
    for child in sorted(graph.nodes[weights].children, key=lambda child: int(child.local_name)):
        (value,) = graph.nodes[child.node_id].attributes
        variables.append((value.full_name, reader.get_tensor(value.checkpoint_key)))
    return variables


def _cold(reason: str) -> dict:
    return {"warm_start_from": None, "reason": reason}


def start_from(
    classifier: tf.keras.Model,
    kind: str,
    base_model: str | None,
    tf_transform_output: tft.TFTransformOutput,
    enabled: bool = True,
) -> dict:
    """Sets `classifier`'s weights (a `kind` model, freshly built, over `tf_transform_output`'s
    vocabularies) from the base model when it is a `kind` model with the same variables;
    leaves them as they are otherwise. Returns what it started from: {"warm_start_from": the
    base SavedModel directory or None, "reason": why, and for a warm start "rows": per
    vocabulary, how many entries kept their trained row and how many are new}."""
    if not enabled:
        return _cold(
            "warm start is off (custom_config warm_start: false, `agnews run --cold-start`)"
        )
    if not base_model:
        return _cold("no base model (the first model of this pipeline, or none was pushed yet)")
    export_dir = saved_model_dir(base_model)
    if export_dir is None:
        return _cold(f"no SavedModel in the base model {base_model}")
    base_kind = _read_kind(export_dir)
    if base_kind is None:
        return _cold(f"the base model {export_dir} does not record its model kind")
    if base_kind != kind:
        return _cold(f"the base model {export_dir} is {base_kind!r}, this run trains {kind!r}")
    base = _base_variables(export_dir)
    layout = [(_role(v.name), tuple(v.shape)) for v in classifier.variables]
    if [(_role(name), value.shape) for name, value in base] != layout:
        return _cold(f"the base model {export_dir} is {kind!r} but has other layers than this one")
    rows = _copy_weights(classifier, base, export_dir, tf_transform_output)
    summary = ", ".join(
        f"{counts['kept']} {name} kept their rows, {counts['new']} are new"
        for name, counts in rows.items()
    )
    return {
        "warm_start_from": export_dir,
        "reason": f"the base model is {kind!r}; {summary}",
        "rows": rows,
    }


def _copy_weights(
    classifier: tf.keras.Model,
    base: list[tuple[str, np.ndarray]],
    export_dir: str,
    tf_transform_output: tft.TFTransformOutput,
) -> dict:
    """Assigns the base model's variables (`base`, in `classifier.variables` order, same
    layout) to `classifier`'s, the vocabulary-indexed ones remapped by token. Returns, per
    vocabulary, how many entries kept their trained row and how many are new."""
    vocabularies = {
        layer.embeddings.ref(): _VOCABULARIES[layer.input_dim]
        for layer in classifier.layers
        if isinstance(layer, tf.keras.layers.Embedding)
    }
    rows = {}
    for variable, (_, value) in zip(classifier.variables, base, strict=True):
        vocabulary = vocabularies.get(variable.ref())
        if vocabulary is None:
            variable.assign(value)
            continue
        old = _read_vocabulary(
            os.path.join(export_dir, tf.saved_model.ASSETS_DIRECTORY, vocabulary.name)
        )
        new = _read_vocabulary(tf_transform_output.vocabulary_file_by_name(vocabulary.name))
        new_keys = vocabulary.row_keys(new)
        unused = [("unused", row) for row in range(len(new_keys), variable.shape[0])]
        variable.assign(
            tf.keras.utils.warmstart_embedding_matrix(
                vocabulary.row_keys(old),
                new_keys + unused,
                value,
                tf.keras.initializers.Constant(variable.numpy()),
            )
        )
        kept = len(set(old) & set(new))
        rows[vocabulary.name] = {"kept": kept, "new": len(new) - kept}
    return rows


def describe(record: dict) -> str:
    """The run log's one line about it."""
    if record["warm_start_from"]:
        return f"Warm start from {record['warm_start_from']}: {record['reason']}"
    return f"Cold start: {record['reason']}"
