"""Warm start across two vocabularies: real ingestion and Transform over two sets of sample rows,
real run_fn training, the base model read back as TF Serving would load it."""

import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
from tfx.utils import io_utils, path_utils

from components import features, model, signatures, trainer, warm_start
from components.artifacts import WARM_START_FILE_NAME, read_json
from tests.helpers.data import sample_lines
from tests.helpers.training import fn_args, run_transform

pytestmark = pytest.mark.lifecycle


@pytest.fixture(scope="module")
def windows(tmp_path_factory):
    """Two Transform outputs over different sample rows, so over different vocabularies."""
    lines = sample_lines(600)
    root = tmp_path_factory.mktemp("windows")
    return run_transform(root / "a", lines[:300]), run_transform(root / "b", lines[300:])


@pytest.fixture(scope="module")
def base_models(windows, tmp_path_factory):
    """{kind: what TFX's Trainer passes as `fn_args.base_model` for it: the serving model
    dir in its Model artifact} of an lstm and a linear model trained by run_fn on
    the first window, one epoch each."""
    uris = {}
    for kind in ("lstm", "linear"):
        out = tmp_path_factory.mktemp(f"base_{kind}")
        args = fn_args(*windows[0], out, {"model": kind, "epochs": 1, "batch_size": 32})
        args.serving_model_dir = path_utils.serving_model_dir(str(out))  # the artifact's layout
        trainer.run_fn(args)
        uris[kind] = args.serving_model_dir
    return uris


def _loaded_weights(export_dir: str) -> list[np.ndarray]:
    """The base model's variables as a model server loads them, in `model.variables` order."""
    return [v.numpy() for v in tf.saved_model.load(export_dir).weights]


def _start(window, tmp_path, config: dict, base_model: str | None):
    """run_fn's model over `window` before any training, started from `base_model`, with what
    it started from; and the same model with fresh weights (run_fn's seed for both)."""
    output = tft.TFTransformOutput(window[1])
    built = []
    for extra in ({"warm_start": False}, {}):
        tf.keras.utils.set_random_seed(trainer.SEED)
        args = fn_args(*window, tmp_path, {**config, **extra}, base_model=base_model)
        built.append(trainer.build_classifier(args, output, trainer.distribution_strategy()))
    (fresh, _), (classifier, start) = built
    return [v.numpy() for v in fresh.variables], classifier, start


def _ids(graph: str, name: str, first_id: int) -> dict[bytes, int]:
    """{entry: id} of a Transform vocabulary whose first entry has id `first_id`."""
    vocabulary = tft.TFTransformOutput(graph).vocabulary_by_name(name)
    return {entry: first_id + index for index, entry in enumerate(vocabulary)}


def test_the_embedding_is_remapped_by_token_and_every_other_layer_copied(
    windows, base_models, tmp_path
):
    base = _loaded_weights(base_models["lstm"])
    fresh, classifier, start = _start(windows[1], tmp_path, {"model": "lstm"}, base_models["lstm"])
    assert start["warm_start_from"] == base_models["lstm"]
    (embedding, *others), (base_embedding, *base_others) = classifier.get_weights(), base
    old = _ids(windows[0][1], features.VOCAB_NAME, features.NUM_RESERVED_IDS)
    new = _ids(windows[1][1], features.VOCAB_NAME, features.NUM_RESERVED_IDS)
    shared = [token for token in new if token in old]
    moved = [token for token in shared if new[token] != old[token]]
    added = [token for token in new if token not in old]
    assert b"the" in shared and len(moved) > 100 and len(added) > 100
    assert start["rows"][features.VOCAB_NAME] == {"kept": len(shared), "new": len(added)}
    # A token in both vocabularies keeps its trained row, wherever its new id is.
    np.testing.assert_array_equal(
        embedding[[new[t] for t in shared]], base_embedding[[old[t] for t in shared]]
    )
    # A new token gets the fresh row a cold start gives it, not the trained row of its id.
    added_ids = [new[t] for t in added]
    np.testing.assert_array_equal(embedding[added_ids], fresh[0][added_ids])
    assert (np.abs(embedding[added_ids] - base_embedding[added_ids]).max(axis=1) > 0).all()
    # Padding and OOV keep theirs; the LSTM and the output layer are copied.
    reserved = list(range(features.NUM_RESERVED_IDS))
    np.testing.assert_array_equal(embedding[reserved], base_embedding[reserved])
    assert len(others) == len(base_others) == 5  # LSTM kernels and bias, output kernel and bias
    for weights, base_weights, fresh_weights in zip(others, base_others, fresh[1:], strict=True):
        np.testing.assert_array_equal(weights, base_weights)
        assert not np.array_equal(weights, fresh_weights)


def test_the_ngram_weights_are_remapped_by_ngram(windows, base_models, tmp_path):
    (base_rows,) = _loaded_weights(base_models["linear"])
    fresh, classifier, start = _start(
        windows[1], tmp_path, {"model": "linear"}, base_models["linear"]
    )
    (rows,) = classifier.get_weights()
    old = _ids(windows[0][1], features.NGRAM_VOCAB_NAME, 0)
    new = _ids(windows[1][1], features.NGRAM_VOCAB_NAME, 0)
    shared = [ngram for ngram in new if ngram in old]
    added = [ngram for ngram in new if ngram not in old]
    assert len(shared) > 100 and added and start["warm_start_from"]
    np.testing.assert_array_equal(
        rows[[new[n] for n in shared]], base_rows[[old[n] for n in shared]]
    )
    np.testing.assert_array_equal(rows[[new[n] for n in added]], fresh[0][[new[n] for n in added]])
    # The one OOV bucket follows each vocabulary's last entry.
    np.testing.assert_array_equal(rows[len(new)], base_rows[len(old)])
    assert np.abs(base_rows[len(old)]).max() > 0  # trained: the check above means something


def test_run_fn_records_its_start_and_the_model_kind(windows, base_models, tmp_path):
    base_run = read_json(
        os.path.join(os.path.dirname(base_models["lstm"]), "logs", WARM_START_FILE_NAME)
    )
    assert base_run["warm_start_from"] is None and "no base model" in base_run["reason"]
    args = fn_args(
        *windows[1],
        tmp_path,
        {"model": "simple_rnn", "epochs": 1, "batch_size": 32},
        base_model=base_models["lstm"],
    )
    trainer.run_fn(args)
    record = read_json(f"{args.model_run_dir}/{WARM_START_FILE_NAME}")
    assert record["warm_start_from"] is None
    assert "is 'lstm', this run trains 'simple_rnn'" in record["reason"]
    assert read_json(f"{args.serving_model_dir}/{warm_start.KIND_FILE}") == {"model": "simple_rnn"}


def test_a_base_model_that_does_not_fit_starts_cold_and_changes_nothing(
    windows, base_models, tmp_path
):
    output = tft.TFTransformOutput(windows[1][1])
    classifier = model.build_model("lstm")
    unrecorded = str(tmp_path / "unrecorded")
    signatures.export_serving_model(classifier, output, unrecorded)  # no record of its kind
    lstm = base_models["lstm"]
    cases = {
        "warm start is off": (lstm, classifier, False),
        "no base model": (None, classifier, True),
        "no SavedModel in the base model": (str(tmp_path), classifier, True),
        "does not record its model kind": (unrecorded, classifier, True),
        "is 'lstm' but has other layers": (lstm, model.build_model("simple_rnn"), True),
    }
    before = classifier.get_weights()
    for reason, (base, built, enabled) in cases.items():
        start = warm_start.start_from(built, "lstm", base, output, enabled)
        assert start["warm_start_from"] is None and reason in start["reason"], start
    for weights, unchanged in zip(classifier.get_weights(), before, strict=True):
        np.testing.assert_array_equal(weights, unchanged)


def test_the_base_model_may_be_its_artifact_its_serving_dir_or_a_pushed_copy(base_models, tmp_path):
    serving = base_models["lstm"]
    pushed, blessing = str(tmp_path / "serving" / "1"), str(tmp_path / "infra_blessing")
    io_utils.copy_dir(serving, pushed)
    io_utils.copy_dir(serving, path_utils.stamped_model_path(blessing))
    assert warm_start.saved_model_dir(os.path.dirname(serving)) == serving
    assert warm_start.saved_model_dir(serving) == serving
    assert warm_start.saved_model_dir(pushed) == pushed
    assert warm_start.saved_model_dir(blessing) == path_utils.stamped_model_path(blessing)
    assert warm_start.saved_model_dir(str(tmp_path)) is None
