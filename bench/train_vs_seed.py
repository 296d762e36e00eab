"""Trainer vs the RNN lesson ("seed"), one run, same machine, same rows.

(a) seed: the lesson's approach re-implemented faithfully: an in-graph TextVectorization
    (20,000 tokens) adapted on 2,000 titles, Embedding(20000, 128, mask_zero=True) and the
    two-layer BiLSTM, batch 16, batches padded to their longest row, stock Keras fit, 1 epoch.
(b) ours: the Trainer's model, input pipeline and fit loop (TFT vocabulary over the full train
    text, length-bucketed batches, early stopping on eval loss): its first epoch, and
(c) the same run at the end of training (best weights restored).
Both read title + description of the same train rows and are scored on the same eval rows
(ExampleGen's 8:1:1 train/eval/holdout split of the shared 12k sample). Each arm runs in a
fresh process, so neither reuses the other's traced graphs. Times cover training only
(validation passes excluded); "start-up" is the first batch: graph tracing plus one step.

    .venv/bin/python bench/train_vs_seed.py [--data ../shared/data/ag_news/train_subset.csv.gz]
"""

from __future__ import annotations

# isort: off
import components  # noqa: F401  (Keras 2 before TensorFlow: see components/__init__.py)

# isort: on
import argparse
import functools
import gzip
import itertools
import multiprocessing
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import tensorflow as tf
import tensorflow_transform.beam as tft_beam
from publish import publish
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

from components import features, ingest, model, preprocessing, rows, settings, trainer
from pipeline.config import PipelineConfig

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared/data/ag_news/train_subset.csv.gz"


def load_split_rows(path: Path) -> dict[str, list[tuple]]:
    """Rows of (label, title, description) per split (train, eval, holdout), split as
    ExampleGen splits them with the pipeline's default bucket counts."""
    config = PipelineConfig()
    names = (features.TRAIN_SPLIT, features.EVAL_SPLIT, features.HOLDOUT_SPLIT)
    bucket_ends = list(
        itertools.accumulate((config.train_buckets, config.eval_buckets, config.holdout_buckets))
    )
    splits = {name: [] for name in names}
    with gzip.open(path, "rb") as handle:
        for line in handle.read().splitlines():
            parsed = rows.parse_line(line)
            if isinstance(parsed, str):
                continue  # the shared sample is clean; ExampleGen would reject these too
            index = ingest.hash_split_index(rows.make_example(*parsed), len(names), bucket_ends)
            splits[names[index]].append(parsed)
    return splits


class TrainingClock(tf.keras.callbacks.Callback):
    """Per epoch: seconds to the end of the first batch and to the end of the last batch,
    so validation passes and callbacks after the epoch are not counted."""

    def __init__(self):
        super().__init__()
        self.first_batch, self.training = [], []

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        elapsed = time.perf_counter() - self._started
        if batch == 0:
            self.first_batch.append(elapsed)
        self._last = elapsed

    def on_epoch_end(self, epoch, logs=None):
        self.training.append(self._last)


def timing(clock: TrainingClock, rows: int, epochs: int | None = None) -> dict:
    """Mean s/epoch and examples/s over the first `epochs` epochs (all when None), with and
    without the start-up (the first epoch's first batch)."""
    seconds = clock.training[:epochs]
    start_up = clock.first_batch[0]
    return {
        "epochs": len(seconds),
        "s_per_epoch": sum(seconds) / len(seconds),
        "start_up_s": start_up,
        "examples_per_s": rows * len(seconds) / sum(seconds),
        "examples_per_s_after_start_up": rows * len(seconds) / (sum(seconds) - start_up),
    }


def seed_model(titles: list[str]) -> tf.keras.Model:
    vectorize = tf.keras.layers.TextVectorization(max_tokens=features.VOCAB_SIZE)
    vectorize.adapt(titles[:2000])
    seed = tf.keras.Sequential(
        [
            vectorize,
            tf.keras.layers.Embedding(features.VOCAB_SIZE, 128, mask_zero=True),
            tf.keras.layers.Bidirectional(tf.keras.layers.LSTM(64, return_sequences=True)),
            tf.keras.layers.Bidirectional(tf.keras.layers.LSTM(64)),
            tf.keras.layers.Dense(features.NUM_CLASSES, activation="softmax"),
        ]
    )
    seed.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return seed


def run_seed(train, evaluation) -> dict:
    def text_dataset(rows):
        texts = [f"{title} {description}" for _, title, description in rows]
        return tf.data.Dataset.from_tensor_slices((texts, [label for label, _, _ in rows])).batch(
            16
        )

    tf.keras.utils.set_random_seed(trainer.SEED)
    seed = seed_model([title for _, title, _ in train])
    train_ds = text_dataset(train).shuffle(1000, seed=trainer.SEED)
    vectorize = seed.layers[0]
    padded = trainer.padding_fraction(
        train_ds.map(lambda text, label: ({features.TOKEN_IDS_KEY: vectorize(text)}, label))
    )
    clock = TrainingClock()
    seed.fit(train_ds, epochs=1, verbose=2, callbacks=[clock])
    _, accuracy = seed.evaluate(text_dataset(evaluation), verbose=0)
    return {
        **timing(clock, len(train)),
        "padding_fraction": padded,
        "eval_accuracy": accuracy,
        "batch_size": 16,
    }


def transform(
    splits: dict[str, list[tuple]], temp_dir: str, custom_config: dict
) -> dict[str, list[dict]]:
    """Our preprocessing_fn through TFT's Beam implementation, analyzed on the train split only;
    the transformed rows of every split."""
    metadata = dataset_metadata.DatasetMetadata(
        schema_utils.schema_from_feature_spec(
            {
                features.TITLE_KEY: tf.io.FixedLenFeature([1], tf.string),
                features.DESCRIPTION_KEY: tf.io.FixedLenFeature([1], tf.string),
                features.LABEL_KEY: tf.io.FixedLenFeature([1], tf.int64),
            }
        )
    )

    def instances(rows):
        return [
            {
                features.TITLE_KEY: [t.encode()],
                features.DESCRIPTION_KEY: [d.encode()],
                features.LABEL_KEY: [label],
            }
            for label, t, d in rows
        ]

    with tft_beam.Context(temp_dir=temp_dir):
        transform_fn = (
            instances(splits[features.TRAIN_SPLIT]),
            metadata,
        ) | tft_beam.AnalyzeDataset(
            functools.partial(preprocessing.preprocessing_fn, custom_config=custom_config)
        )
        return {
            name: (
                ((instances(rows), metadata), transform_fn)
                | f"Transform[{name}]" >> tft_beam.TransformDataset(output_record_batches=False)
            )[0]
            for name, rows in splits.items()
        }


def examples_dataset(
    rows, shuffle: bool, keys=(features.TOKEN_IDS_KEY,), seed: int = trainer.SEED
) -> tf.data.Dataset:
    """(features dict, label) per transformed row, as trainer.read_examples yields them."""
    dtypes = {key: model.input_dtype(key) for key in keys}
    dataset = tf.data.Dataset.from_generator(
        lambda: (
            (
                {k: np.asarray(r[k], dtypes[k].as_numpy_dtype) for k in keys},
                np.int64(r[features.LABEL_KEY]),
            )
            for r in rows
        ),
        output_signature=(
            {k: tf.TensorSpec([None], dtypes[k]) for k in keys},
            tf.TensorSpec([], tf.int64),
        ),
    ).cache()
    return dataset.shuffle(trainer.SHUFFLE_BUFFER, seed=seed) if shuffle else dataset


def run_ours(
    train_rows, eval_rows, batch_size: int, learning_rate: float, epochs: int
) -> tuple[dict, dict]:
    """(first epoch, end of training) of one run of the Trainer's fit loop."""
    tf.keras.utils.set_random_seed(trainer.SEED)
    train_ds = trainer.batch_examples(examples_dataset(train_rows, shuffle=True), batch_size)
    eval_ds = trainer.batch_examples(examples_dataset(eval_rows, shuffle=False), batch_size)
    padded = trainer.padding_fraction(train_ds)  # also fills the caches: reading is not timed
    trainer.padding_fraction(eval_ds)
    padded_plain = trainer.padding_fraction(
        trainer.batch_examples(
            examples_dataset(train_rows, shuffle=True), batch_size, bucketing=False
        )
    )
    with trainer.distribution_strategy().scope():
        classifier = model.build_model(learning_rate=learning_rate)
    clock = TrainingClock()
    history = trainer.fit(classifier, train_ds, eval_ds, epochs=epochs, callbacks=[clock])
    _, accuracy = classifier.evaluate(eval_ds, verbose=0)
    common = {
        "padding_fraction": padded,
        "padding_fraction_without_bucketing": padded_plain,
        "batch_size": batch_size,
    }
    first = {
        **timing(clock, len(train_rows), epochs=1),
        **common,
        "eval_accuracy": history.history["val_accuracy"][0],
    }
    return first, {**timing(clock, len(train_rows)), **common, "eval_accuracy": accuracy}


def in_fresh_process(function, *args):
    """Runs one arm in a new interpreter: no graph or AutoGraph cache shared between arms."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--batch-size", type=int, default=settings.DEFAULT_BATCH_SIZE)
    parser.add_argument("--learning-rate", type=float, default=settings.DEFAULT_LEARNING_RATE)
    parser.add_argument("--min-token-count", type=int, default=features.DEFAULT_MIN_TOKEN_COUNT)
    parser.add_argument("--full-epochs", type=int, default=settings.DEFAULT_EPOCHS)
    args = parser.parse_args()

    splits = load_split_rows(args.data)
    train, evaluation = splits[features.TRAIN_SPLIT], splits[features.EVAL_SPLIT]
    seed = in_fresh_process(run_seed, train, evaluation)
    with tempfile.TemporaryDirectory() as temp_dir:
        transformed = transform(
            {features.TRAIN_SPLIT: train, features.EVAL_SPLIT: evaluation},
            temp_dir,
            {"min_token_count": args.min_token_count},
        )
    train_rows, eval_rows = transformed[features.TRAIN_SPLIT], transformed[features.EVAL_SPLIT]
    ours, full = in_fresh_process(
        run_ours, train_rows, eval_rows, args.batch_size, args.learning_rate, args.full_epochs
    )

    table = [
        "| run | batch | start-up s | s/epoch | examples/s | examples/s after start-up "
        "| padding fraction | eval accuracy |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in (
        ("(a) seed, 1 epoch", seed),
        ("(b) ours, 1st epoch", ours),
        (f"(c) ours, early stopping ({full['epochs']} epochs)", full),
    ):
        table.append(
            f"| {name} | {r['batch_size']} | {r['start_up_s']:.1f} | {r['s_per_epoch']:.1f} | "
            f"{r['examples_per_s']:.0f} | {r['examples_per_s_after_start_up']:.0f} | "
            f"{r['padding_fraction']:.3f} | {r['eval_accuracy']:.4f} |"
        )
    table.append(
        f"\n(b)/(a): {ours['examples_per_s'] / seed['examples_per_s']:.1f}x examples/s "
        f"({ours['examples_per_s_after_start_up'] / seed['examples_per_s_after_start_up']:.1f}x "
        f"after start-up), eval accuracy {ours['eval_accuracy'] - seed['eval_accuracy']:+.4f}; "
        f"(c) - (a) eval accuracy {full['eval_accuracy'] - seed['eval_accuracy']:+.4f}. "
        f"Padding without bucketing at batch {args.batch_size}: "
        f"{ours['padding_fraction_without_bucketing']:.3f}. "
        f"{len(train)} train rows, {len(evaluation)} eval rows, {args.data.name}."
    )
    publish(
        "train_vs_seed", "\n".join(table), {"seed": seed, "ours_1st_epoch": ours, "ours_full": full}
    )


if __name__ == "__main__":
    main()
