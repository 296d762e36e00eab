"""Trainer vs the RNN lesson ("seed"), one run, same machine, same rows.

(a) seed: the lesson's approach re-implemented faithfully: an in-graph TextVectorization
    adapted on 2,000 titles, the masked two-layer BiLSTM, batch 16, batches padded to their
    longest row, 1 epoch.
(b) ours: the Trainer's model and input pipeline (TFT vocabulary over the full train text,
    length-bucketed batches) for 1 epoch, then (c) trained to convergence (early stopping).
Both read title + description of the same train rows and are scored on the same eval rows
(ExampleGen's 9:1 hash split of the shared 12k sample).

    .venv/bin/python bench/train_vs_seed.py [--data ../shared/data/ag_news/train_subset.csv.gz]
"""
from __future__ import annotations

import argparse
import functools
import gzip
import tempfile
import time
from pathlib import Path

import components  # noqa: F401  (Keras 2 before TensorFlow)
import numpy as np
import tensorflow as tf
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

from components import features, ingest, model, preprocessing, trainer
from publish import publish

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared/data/ag_news/train_subset.csv.gz"


def load_split_rows(path: Path) -> tuple[list[tuple], list[tuple]]:
    """(train rows, eval rows) of (label, title, description), split as ExampleGen splits."""
    train, evaluation = [], []
    with gzip.open(path, "rb") as handle:
        for line in handle.read().splitlines():
            parsed = ingest.parse_line(line)
            if isinstance(parsed, str):
                continue  # the shared sample is clean; ExampleGen would reject these too
            split = ingest.hash_split_index(ingest.make_example(*parsed), 2, [9, 10])
            (train if split == 0 else evaluation).append(parsed)
    return train, evaluation


def seed_model(titles: list[str]) -> tf.keras.Model:
    vectorize = tf.keras.layers.TextVectorization(max_tokens=features.VOCAB_SIZE)
    vectorize.adapt(titles[:2000])
    seed = tf.keras.Sequential([
        vectorize,
        tf.keras.layers.Embedding(len(vectorize.get_vocabulary()), 128, mask_zero=True),
        tf.keras.layers.Bidirectional(tf.keras.layers.LSTM(64, return_sequences=True)),
        tf.keras.layers.Bidirectional(tf.keras.layers.LSTM(64)),
        tf.keras.layers.Dense(features.NUM_CLASSES, activation="softmax"),
    ])
    seed.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return seed


def run_seed(train, evaluation) -> dict:
    def text_dataset(rows):
        texts = [f"{title} {description}" for _, title, description in rows]
        return tf.data.Dataset.from_tensor_slices((texts, [label for label, _, _ in rows])).batch(16)

    tf.keras.utils.set_random_seed(trainer.SEED)
    seed = seed_model([title for _, title, _ in train])
    train_ds = text_dataset(train).shuffle(1000, seed=trainer.SEED)
    vectorize = seed.layers[0]
    padded = trainer.padding_fraction(train_ds.map(lambda text, label: (vectorize(text), label)))
    started = time.perf_counter()
    seed.fit(train_ds, epochs=1, verbose=2)
    seconds = time.perf_counter() - started
    _, accuracy = seed.evaluate(text_dataset(evaluation), verbose=0)
    return {"s_per_epoch": seconds, "padding_fraction": padded, "eval_accuracy": accuracy,
            "batch_size": 16}


def transform(train, evaluation, temp_dir: str, min_token_count: int) -> tuple[list, list]:
    """Our preprocessing_fn through TFT's Beam implementation: vocabulary from train only."""
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec({
        features.TITLE_KEY: tf.io.FixedLenFeature([1], tf.string),
        features.DESCRIPTION_KEY: tf.io.FixedLenFeature([1], tf.string),
        features.LABEL_KEY: tf.io.FixedLenFeature([1], tf.int64)}))

    def instances(rows):
        return [{features.TITLE_KEY: [t.encode()], features.DESCRIPTION_KEY: [d.encode()],
                 features.LABEL_KEY: [label]} for label, t, d in rows]

    with tft_beam.Context(temp_dir=temp_dir):
        (train_out, _), transform_fn = (instances(train), metadata) | tft_beam.AnalyzeAndTransformDataset(
            functools.partial(preprocessing.preprocessing_fn,
                              custom_config={"min_token_count": min_token_count}),
            output_record_batches=False)
        eval_out, _ = ((instances(evaluation), metadata), transform_fn) | tft_beam.TransformDataset(
            output_record_batches=False)
    return train_out, eval_out


def examples_dataset(rows, shuffle: bool) -> tf.data.Dataset:
    dataset = tf.data.Dataset.from_generator(
        lambda: ((np.asarray(r[features.TOKEN_IDS_KEY], np.int64), np.int64(r[features.LABEL_KEY]))
                 for r in rows),
        output_signature=(tf.TensorSpec([None], tf.int64), tf.TensorSpec([], tf.int64))).cache()
    return dataset.shuffle(trainer.SHUFFLE_BUFFER, seed=trainer.SEED) if shuffle else dataset


def run_ours(train_rows, eval_rows, batch_size: int, learning_rate: float, epochs: int) -> dict:
    tf.keras.utils.set_random_seed(trainer.SEED)
    train_ds = trainer.batch_examples(examples_dataset(train_rows, shuffle=True), batch_size)
    eval_ds = trainer.batch_examples(examples_dataset(eval_rows, shuffle=False), batch_size)
    padded = trainer.padding_fraction(train_ds)  # also fills the cache: reading is not timed
    padded_plain = trainer.padding_fraction(trainer.batch_examples(
        examples_dataset(train_rows, shuffle=True), batch_size, bucketing=False))
    with trainer.distribution_strategy().scope():
        classifier = model.build_model(learning_rate=learning_rate)
    # Like the seed, the 1-epoch run is timed without a validation pass.
    validation = {} if epochs == 1 else {"validation_data": eval_ds, "callbacks": [
        tf.keras.callbacks.EarlyStopping(monitor="val_loss", patience=trainer.DEFAULT_PATIENCE,
                                         restore_best_weights=True)]}
    started = time.perf_counter()
    history = classifier.fit(train_ds, epochs=epochs, verbose=2, **validation)
    seconds = time.perf_counter() - started
    _, accuracy = classifier.evaluate(eval_ds, verbose=0)
    ran = len(history.history["loss"])
    return {"s_per_epoch": seconds / ran, "epochs": ran, "padding_fraction": padded,
            "padding_fraction_without_bucketing": padded_plain, "eval_accuracy": accuracy,
            "batch_size": batch_size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--batch-size", type=int, default=trainer.DEFAULT_BATCH_SIZE)
    parser.add_argument("--learning-rate", type=float, default=trainer.DEFAULT_LEARNING_RATE)
    parser.add_argument("--min-token-count", type=int, default=features.DEFAULT_MIN_TOKEN_COUNT)
    parser.add_argument("--full-epochs", type=int, default=trainer.DEFAULT_EPOCHS)
    args = parser.parse_args()

    train, evaluation = load_split_rows(args.data)
    seed = run_seed(train, evaluation)
    with tempfile.TemporaryDirectory() as temp_dir:
        train_rows, eval_rows = transform(train, evaluation, temp_dir, args.min_token_count)
    ours = run_ours(train_rows, eval_rows, args.batch_size, args.learning_rate, epochs=1)
    full = run_ours(train_rows, eval_rows, args.batch_size, args.learning_rate, epochs=args.full_epochs)
    for result in (seed, ours, full):
        result["examples_per_s"] = len(train) / result["s_per_epoch"]

    table = [
        "| run | batch | s/epoch | examples/s | padding fraction | eval accuracy |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in (("(a) seed, 1 epoch", seed), ("(b) ours, 1 epoch", ours),
                    (f"(c) ours, early stopping ({full['epochs']} epochs)", full)):
        table.append(f"| {name} | {r['batch_size']} | {r['s_per_epoch']:.1f} | "
                     f"{r['examples_per_s']:.0f} | {r['padding_fraction']:.3f} | {r['eval_accuracy']:.4f} |")
    table.append(f"\n(b)/(a): {ours['examples_per_s'] / seed['examples_per_s']:.1f}x examples/s, "
                 f"eval accuracy {ours['eval_accuracy'] - seed['eval_accuracy']:+.4f}; "
                 f"padding without bucketing at batch {args.batch_size}: "
                 f"{ours['padding_fraction_without_bucketing']:.3f}. "
                 f"{len(train)} train rows, {len(evaluation)} eval rows, {args.data.name}.")
    publish("train_vs_seed", "\n".join(table), {"seed": seed, "ours_1_epoch": ours, "ours_full": full})


if __name__ == "__main__":
    main()
