"""Held-out accuracy of the model variants, mean ± sd over seeds, on the shared 12k sample.

The rows are split as ExampleGen splits them (8:1:1 train / eval / holdout, keyed on the
headline). Every run trains with the Trainer's own model, input pipeline and fit loop (early
stopping and learning-rate cuts on the eval split) and is then scored on eval and on holdout.
Choices between settings are made on the eval column; the holdout column is what a user
should expect on new data (nothing in training or selection read it). Each run is a fresh
process; the seed sets weights, dropout and shuffling.

    .venv/bin/python bench/accuracy.py [--seeds 3] [--variants 'linear|bilstm2_wide, ...']

With --variants, the other variants' rows are kept from bench/results/accuracy.json. Each run
records the text cleanup it used; a variant rerun under a new cleanup keeps its old runs as a
row of their own, so that the table compares the two.
"""

from __future__ import annotations

# isort: off
import components  # noqa: F401  (Keras 2 before TensorFlow: see components/__init__.py)

# isort: on
import argparse
import json
import statistics
import tempfile
import time

import tensorflow as tf
from publish import RESULTS, publish
from train_vs_seed import (
    DEFAULT_DATA,
    examples_dataset,
    in_fresh_process,
    load_split_rows,
    transform,
)

from components import features, model, settings, trainer

SAVED = RESULTS / "accuracy.json"
# The text cleanup of components/text.py: rename it when that changes. Runs saved without one
# used the cleanup before issue 17 (" #39;s" became a token "s", "a\\b" became "ab").
TEXT_CLEANUP = "issue 17: crawl escapes as clients write them"
OLD_TEXT_CLEANUP = "before issue 17"
# name -> (Transform custom_config, Trainer settings); unnamed settings are `agnews run`'s
# defaults. The first rows are the BiLSTM at the old default embedding dropout (0.6) and one
# change each; the dropout rows led to today's default, 0.9 (chosen on eval accuracy).
VARIANTS = {
    "bilstm2, embedding_dropout=0.6 (old default)": ({}, {"embedding_dropout": 0.6}),
    "  + min_token_count=2": ({"min_token_count": 2}, {"embedding_dropout": 0.6}),
    "  + batch_size=128": ({}, {"embedding_dropout": 0.6, "batch_size": 128}),
    "  + learning_rate=5e-4": ({}, {"embedding_dropout": 0.6, "learning_rate": 5e-4}),
    "bilstm2, embedding_dropout=0.5": ({}, {"embedding_dropout": 0.5}),
    "bilstm2, embedding_dropout=0.7": ({}, {"embedding_dropout": 0.7}),
    "bilstm2, embedding_dropout=0.8": ({}, {"embedding_dropout": 0.8}),
    "bilstm2, embedding_dropout=0.9 (default)": ({}, {"embedding_dropout": 0.9}),
    "linear": ({}, {"model": "linear"}),
    "bilstm2_wide, embedding_dropout=0.6": (
        {},
        {"model": "bilstm2_wide", "embedding_dropout": 0.6},
    ),
    "bilstm2_wide, embedding_dropout=0.9 (default)": (
        {},
        {"model": "bilstm2_wide", "embedding_dropout": 0.9},
    ),
}


def train_and_score(splits: dict, train_settings: dict, seed: int) -> dict:
    """One training run of the Trainer's loop; accuracy on eval and holdout."""
    name = train_settings.get("model", settings.DEFAULT_MODEL)
    batch_size = train_settings.get("batch_size", settings.DEFAULT_BATCH_SIZE)
    keys = model.input_keys(name)
    tf.keras.utils.set_random_seed(seed)
    data = {
        split: trainer.batch_examples(
            examples_dataset(rows, shuffle=split == features.TRAIN_SPLIT, keys=keys, seed=seed),
            batch_size,
        )
        for split, rows in splits.items()
    }
    classifier = model.build_model(
        name,
        train_settings.get("learning_rate", settings.DEFAULT_LEARNING_RATE),
        train_settings.get("embedding_dropout", settings.DEFAULT_EMBEDDING_DROPOUT),
    )
    started = time.perf_counter()
    history = trainer.fit(
        classifier,
        data[features.TRAIN_SPLIT],
        data[features.EVAL_SPLIT],
        epochs=train_settings.get("epochs", settings.DEFAULT_EPOCHS),
    )
    seconds = time.perf_counter() - started
    return {
        "seed": seed,
        "epochs": len(history.history["loss"]),
        "seconds": seconds,
        **{
            split: classifier.evaluate(data[split], verbose=0)[1]
            for split in (features.EVAL_SPLIT, features.HOLDOUT_SPLIT)
        },
    }


def _text_cleanup(runs: list[dict]) -> str:
    return ", ".join(sorted({run.get("text_cleanup", OLD_TEXT_CLEANUP) for run in runs}))


def _mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {sd:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--variants", default="|".join(VARIANTS), help=f"|-separated, of: {' | '.join(VARIANTS)}"
    )
    args = parser.parse_args()
    rows = load_split_rows(args.data)
    # Variants not run this time keep their last results (same harness, same seeds).
    results = json.loads(SAVED.read_text()) if SAVED.exists() else {}
    transformed = {}
    for variant in filter(None, args.variants.split("|")):  # --variants '': table only
        transform_config, train_settings = VARIANTS[variant]
        transform_config = {
            **transform_config,
            "ngrams": train_settings.get("model") in settings.NGRAM_MODELS,
        }
        key = tuple(sorted(transform_config.items()))
        if key not in transformed:
            with tempfile.TemporaryDirectory() as temp_dir:
                transformed[key] = transform(rows, temp_dir, transform_config)
        previous = results.get(variant, [])
        if previous and _text_cleanup(previous) != TEXT_CLEANUP:
            results[f"{variant}, text cleanup {_text_cleanup(previous)}"] = previous
        results[variant] = [
            {
                **in_fresh_process(train_and_score, transformed[key], train_settings, seed),
                "text_cleanup": TEXT_CLEANUP,
            }
            for seed in range(1, args.seeds + 1)
        ]
        print(variant, results[variant], flush=True)

    sizes = ", ".join(f"{split} {len(r):,}" for split, r in rows.items())
    table = [
        "| variant | text cleanup | eval accuracy | holdout accuracy | epochs | s per run |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    # Each variant's row, then the rows of its runs under earlier text cleanups.
    results = {
        name: runs
        for variant in VARIANTS
        for name, runs in results.items()
        if name == variant or name.startswith(f"{variant}, text cleanup ")
    }
    for variant, runs in results.items():
        table.append(
            f"| {variant} | {_text_cleanup(runs)} | {_mean_sd([r['eval'] for r in runs])} | "
            f"{_mean_sd([r['holdout'] for r in runs])} | "
            f"{statistics.mean(r['epochs'] for r in runs):.1f} | "
            f"{statistics.mean(r['seconds'] for r in runs):.0f} |"
        )
    table.append(
        f"\nMean ± sd over seeds 1-{args.seeds}, one fresh process per run, 2-core CPU. "
        f"Rows: {sizes} ({args.data}). 's per run' is fit's wall time, some runs with "
        "other jobs on the machine: a rough cost, not a speed measurement "
        "(bench/train_vs_seed.py is that)."
    )
    publish("accuracy", "\n".join(table), results)


if __name__ == "__main__":
    main()
