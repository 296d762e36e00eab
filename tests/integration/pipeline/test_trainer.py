"""run_fn and its input pipeline on the real Transform outputs of the end-to-end run: the
model's (token ids) and the baseline's (token ids and the n-gram features), which every model
variant can train on."""

import glob
import types

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft

from components import features, model, settings, trainer
from pipeline import node_ids
from tests.helpers.data import newest_output, read_examples, transform_outputs
from tests.helpers.training import fn_args


def _fn_args(root, tmp_path, custom_config, transform: str = node_ids.TRANSFORM):
    """run_fn's arguments on the newest output of Transform node `transform` in the run."""
    examples, _ = transform_outputs(root)
    examples.uri = newest_output(root, transform, "transformed_examples")
    graph = newest_output(root, transform, "transform_graph")
    return fn_args(examples, graph, tmp_path, custom_config)


def test_no_row_reaching_the_model_is_fully_masked(first_run, tmp_path):
    root, _ = first_run
    args = _fn_args(root, tmp_path, {})
    tf_transform_output = tft.TFTransformOutput(args.transform_output)
    rows = oov_only = 0
    for files in (args.train_files, args.eval_files):
        examples = trainer.read_examples(files, args.data_accessor, tf_transform_output)
        for row, _ in trainer.batch_examples(examples, batch_size=8):
            token_ids = row[features.TOKEN_IDS_KEY]
            real = token_ids.numpy() != features.PAD_ID
            assert real.any(axis=1).all()
            assert (real[:, 0]).all()  # right padding: real tokens first
            assert real[:, -1].any()  # padded to the batch's own longest row, no further
            rows += len(real)
            oov_only += int(
                ((token_ids.numpy() == features.OOV_ID).sum(axis=1) == real.sum(axis=1)).sum()
            )
    ingested = newest_output(root, "FileBasedExampleGen", "examples")
    holdout = len(read_examples(types.SimpleNamespace(uri=ingested), features.HOLDOUT_SPLIT))
    assert holdout > 0 and rows + holdout == 301  # 300 rows + the punctuation-only row, none lost
    assert oov_only >= 1  # the punctuation-only row became a single OOV token


def test_bucketing_pads_less_than_plain_padded_batches():
    lengths = np.random.default_rng(0).integers(1, 120, size=512)
    examples = tf.data.Dataset.from_generator(
        lambda: (
            ({features.TOKEN_IDS_KEY: np.arange(2, n + 2, dtype=np.int64)}, np.int64(0))
            for n in lengths
        ),
        output_signature=(
            {features.TOKEN_IDS_KEY: tf.TensorSpec([None], tf.int64)},
            tf.TensorSpec([], tf.int64),
        ),
    )
    bucketed = trainer.padding_fraction(trainer.batch_examples(examples, 32, bucketing=True))
    plain = trainer.padding_fraction(trainer.batch_examples(examples, 32, bucketing=False))
    assert bucketed < plain / 3
    rows = sum(int(label.shape[0]) for _, label in trainer.batch_examples(examples, 32))
    assert rows == 512


def test_ngram_rows_are_padded_with_weight_zero(first_run, tmp_path):
    root, _ = first_run
    args = _fn_args(root, tmp_path, {}, node_ids.BASELINE_TRANSFORM)
    tf_transform_output = tft.TFTransformOutput(args.transform_output)
    examples = trainer.read_examples(
        args.eval_files,
        args.data_accessor,
        tf_transform_output,
        keys=model.input_keys("linear"),
    )
    rows = 0
    for row, _ in trainer.batch_examples(examples, batch_size=8):
        ids, weights = row[features.NGRAM_IDS_KEY].numpy(), row[features.NGRAM_WEIGHTS_KEY].numpy()
        assert ids.shape == weights.shape and (weights[:, 0] > 0).all()
        assert ((weights == 0) <= (ids == 0)).all()  # a zero weight is padding (id 0)
        assert (ids < features.NGRAM_VOCAB_SIZE).all()
        rows += len(ids)
    assert rows > 0


@pytest.mark.parametrize(
    "name", [name for name in settings.MODEL_NAMES if name != settings.DEFAULT_MODEL]
)
def test_every_variant_trains_and_exports_a_serving_model(first_run, tmp_path, name):
    """The n-gram models train on the baseline's Transform output, which has the n-gram
    features; their export carries both vocabularies (the pipeline's --model bilstm2_wide run
    would give its own Transform the same features: PipelineConfig.transform_config). The
    default model is left out: first_run's own Trainer trained and exported it, and the
    end-to-end tests serve it."""
    root, _ = first_run
    ngrams = name in settings.NGRAM_MODELS
    transform = node_ids.BASELINE_TRANSFORM if ngrams else node_ids.TRANSFORM
    args = _fn_args(root, tmp_path, {"model": name, "epochs": 1, "batch_size": 32}, transform)
    trainer.run_fn(args)
    serve = tf.saved_model.load(args.serving_model_dir).signatures[features.SERVING_DEFAULT]
    out = serve(title=tf.constant(["Oil prices rise"]), description=tf.constant([""]))
    assert out[features.PROBABILITIES_KEY].shape == (1, features.NUM_CLASSES)
    assert glob.glob(str(tmp_path / "logs" / "train" / "events.out.tfevents.*"))
    assets = tmp_path / "serving_model" / "assets"
    assert (assets / features.VOCAB_NAME).stat().st_size > 0
    assert (assets / features.NGRAM_VOCAB_NAME).exists() == ngrams
    if ngrams:
        vocabulary = (assets / features.NGRAM_VOCAB_NAME).read_text().splitlines()
        assert any(" " in ngram for ngram in vocabulary)  # bigrams
        assert any(" " not in ngram for ngram in vocabulary)  # and single words


def test_mixed_precision_keeps_a_float32_softmax():
    tf.keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        classifier = model.build_model("lstm")
    finally:
        tf.keras.mixed_precision.set_global_policy("float32")
    assert classifier.layers[1].compute_dtype == "float16"
    assert classifier.output.dtype == tf.float32
