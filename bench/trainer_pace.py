"""The Trainer's epochs against the same model in plain Keras on the same batches (issue 27
item 4): is the pipeline's training as fast as the hardware allows?

One Transform output of the shared 12k sample (TFX's Transform executor, as the pipeline runs
it). Two arms, each in a fresh process, EPOCHS epochs each, with validation:
- **Trainer**: `run_fn` as TFX's Trainer calls it (its strategy, input path from the
  transformed files, callbacks, backup and export), epoch seconds from its history;
- **plain Keras**: `model.build_model` fitted by `model.fit` on the same batches (the Trainer's
  own training_epochs and eval batches, cached in memory by tf.data before the clock starts),
  no strategy, no callback but the same epoch clock.
The figure is the steady epoch (median after the first, which traces the graphs) per 1,000
train examples, validation included in both; the target is the Trainer within 1.2x of plain
Keras.

    .venv/bin/python bench/trainer_pace.py [--data PATH] [--epochs 4]
"""

from __future__ import annotations

# isort: off
import components  # noqa: F401  (Keras 2 before TensorFlow: see components/__init__.py)

# isort: on
import argparse
import gzip
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `tests` for run_transform

import tensorflow as tf
import tensorflow_transform as tft
from publish import publish
from train_vs_seed import DEFAULT_DATA, in_fresh_process

from components import features, model, settings, trainer
from components.artifacts import EPOCH_SECONDS_KEY, HISTORY_FILE_NAME
from tests.helpers.data import read_examples
from tests.helpers.training import fn_args, run_transform


def _config(epochs: int) -> dict:
    """The pipeline's defaults, for a fixed number of epochs and no warm start."""
    return {"epochs": epochs, "patience": epochs, "warm_start": False}


def trainer_arm(transformed, graph: str, out_dir: str, epochs: int) -> dict:
    """run_fn as TFX's Trainer calls it; its epochs' seconds from the history it writes."""
    args = fn_args(transformed, graph, Path(out_dir), _config(epochs))
    started = time.perf_counter()
    trainer.run_fn(args)
    run_fn_s = time.perf_counter() - started
    history = json.loads(Path(args.model_run_dir, HISTORY_FILE_NAME).read_text())
    return {"epoch_s": history[EPOCH_SECONDS_KEY], "run_fn_s": run_fn_s}


def keras_arm(transformed, graph: str, out_dir: str, epochs: int) -> dict:
    """The same model and batches in plain Keras: the batches in memory, model.fit alone."""
    args = fn_args(transformed, graph, Path(out_dir), _config(epochs))
    tf.keras.utils.set_random_seed(trainer.SEED)
    output = tft.TFTransformOutput(graph)
    train, steps = trainer.training_epochs(
        trainer.read_examples(args.train_files, args.data_accessor, output),
        settings.DEFAULT_BATCH_SIZE,
        first_epoch=0,
        epochs=epochs,
    )
    evaluation = trainer.batch_examples(
        trainer.read_examples(args.eval_files, args.data_accessor, output),
        settings.DEFAULT_BATCH_SIZE,
    )
    # Every batch the fit will read, in memory before the clock starts: no parsing, no
    # shuffling, no padding left in the timed epochs.
    train, evaluation = train.cache(), evaluation.cache()
    for batches in (train, evaluation):
        batches.reduce(0, lambda count, _: count + 1)
    classifier = model.build_model(
        settings.DEFAULT_MODEL, settings.DEFAULT_LEARNING_RATE, settings.DEFAULT_EMBEDDING_DROPOUT
    )
    timer = trainer.EpochTimer()
    classifier.fit(
        train,
        validation_data=evaluation,
        epochs=epochs,
        steps_per_epoch=steps,
        callbacks=[timer],
        verbose=0,
    )
    return {"epoch_s": timer.seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    with gzip.open(args.data, "rb") as handle:
        lines = handle.read().splitlines()
    with tempfile.TemporaryDirectory(prefix="agnews-pace-") as temp:
        root = Path(temp)
        transformed, graph = in_fresh_process(run_transform, root / "transform", lines, False)
        rows = len(read_examples(transformed, features.TRAIN_SPLIT))
        arms = {}
        for name, arm in (("Trainer (run_fn)", trainer_arm), ("plain Keras", keras_arm)):
            arms[name] = in_fresh_process(arm, transformed, graph, str(root / name), args.epochs)
            print(f"{name}: {arms[name]}", flush=True)
    for figures in arms.values():
        steady = statistics.median(figures["epoch_s"][1:])
        figures["steady_s_per_1000"] = 1000 * steady / rows
    ours, plain = (arms[name]["steady_s_per_1000"] for name in arms)
    lines_out = [
        "# The Trainer's epochs against plain Keras",
        "",
        f"{platform.node()}, {tf.config.threading.get_intra_op_parallelism_threads() or 'all'} "
        f"intra-op threads, {time.strftime('%Y-%m-%d')}; {args.data.name}: {rows} train rows, "
        f"batch {settings.DEFAULT_BATCH_SIZE}, {args.epochs} epochs, validation included",
        "",
        "| arm | epochs (s) | steady epoch per 1,000 train examples (s) |",
        "| --- | --- | --- |",
        *(
            f"| {name} | {', '.join(f'{s:.1f}' for s in f['epoch_s'])} | "
            f"{f['steady_s_per_1000']:.2f} |"
            for name, f in arms.items()
        ),
        "",
        f"Trainer over plain Keras: {ours / plain:.2f}x (target 1.2x: "
        f"{'met' if ours <= 1.2 * plain else 'NOT met'}). run_fn in all: "
        f"{arms['Trainer (run_fn)']['run_fn_s']:.0f} s.",
    ]
    publish("trainer_pace", "\n".join(lines_out), {"train_rows": rows, "arms": arms})


if __name__ == "__main__":
    main()
