"""Warm start vs cold start on the same window: epochs and seconds to the best eval loss, and
holdout accuracy, mean ± standard error over seeds.

The shared 12k sample is cut into two spans (its first half, then the rest). The base model is
what the pipeline's first run trains: run_fn over span 1 alone. Window 2 is both spans, with
its own Transform (so its own, larger vocabulary). On window 2, each seed trains the model
twice with the Trainer's own build (trainer.build_classifier) and fit loop (early stopping on
eval loss, best weights restored): cold, and warm-started from the base model. Each arm runs in
a fresh process. Seconds count from building the model (the warm start's reading and
remapping included) to the end of the epoch with the best eval loss, validation included.

    .venv/bin/python bench/warm_start.py [--seeds 2] [--epochs 8] [--model bilstm2]
"""

from __future__ import annotations

# isort: off
import components  # noqa: F401  (Keras 2 before TensorFlow: see components/__init__.py)

# isort: on
import argparse
import gzip
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
from tests.helpers.training import fn_args, run_transform


class EpochClock(tf.keras.callbacks.Callback):
    """Seconds since `started` at the end of each epoch (validation included)."""

    def __init__(self, started: float):
        super().__init__()
        self.started, self.ends = started, []

    def on_epoch_end(self, epoch, logs=None):
        self.ends.append(time.perf_counter() - self.started)


def run_arm(window, out_dir: str, config: dict, base_model: str | None, seed: int) -> dict:
    """One training on `window`, from `base_model` (None: cold); what it took to its best."""
    args = fn_args(*window, Path(out_dir), config, base_model=base_model)
    output = tft.TFTransformOutput(args.transform_output)
    keys = model.input_keys(config["model"])
    tf.keras.utils.set_random_seed(seed)
    train, evaluation, holdout = (
        trainer.read_examples(
            [f"{window[0].uri}/Split-{split}/*"], args.data_accessor, output, keys=keys
        )
        for split in (features.TRAIN_SPLIT, features.EVAL_SPLIT, features.HOLDOUT_SPLIT)
    )
    train, steps_per_epoch = trainer.training_epochs(
        train, config["batch_size"], first_epoch=0, epochs=config["epochs"]
    )
    evaluation, holdout = (
        trainer.batch_examples(d, config["batch_size"]) for d in (evaluation, holdout)
    )
    started = time.perf_counter()
    classifier, start = trainer.build_classifier(args, output, trainer.distribution_strategy())
    clock = EpochClock(started)
    history = trainer.fit(
        classifier,
        train,
        evaluation,
        epochs=config["epochs"],
        steps_per_epoch=steps_per_epoch,
        patience=config["patience"],
        callbacks=[clock],
        seed=seed,
    ).history
    best = min(range(len(history["val_loss"])), key=history["val_loss"].__getitem__)
    _, accuracy = classifier.evaluate(holdout, verbose=0)
    return {
        "seed": seed,
        "warm": bool(start["warm_start_from"]),
        "start": start["reason"],
        "epochs_run": len(history["val_loss"]),
        "epochs_to_best": best + 1,
        "seconds_to_best": clock.ends[best],
        "best_eval_loss": history["val_loss"][best],
        "holdout_accuracy": accuracy,
    }


def build_windows(data: Path, root: Path):
    """(span 1's Transform output, window 2's): the sample's first half, then all of it."""
    with gzip.open(data, "rb") as handle:
        lines = handle.read().splitlines()
    return (
        run_transform(root / "span1", lines[: len(lines) // 2]),
        run_transform(root / "window2", lines),
    )


def train_base(span1, out_dir: Path, config: dict) -> str:
    """The base model as the pipeline's first run trains it (run_fn, cold); its serving dir."""
    args = fn_args(*span1, out_dir, {**config, "warm_start": False})
    trainer.run_fn(args)
    return args.serving_model_dir


def mean_se(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return values[0], float("nan")
    return statistics.mean(values), statistics.stdev(values) / len(values) ** 0.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=8, help="budget per training")
    parser.add_argument("--model", default=settings.DEFAULT_MODEL, choices=settings.MODEL_NAMES)
    args = parser.parse_args()
    config = {
        "model": args.model,
        "epochs": args.epochs,
        "patience": settings.DEFAULT_PATIENCE,
        "batch_size": settings.DEFAULT_BATCH_SIZE,
    }
    with tempfile.TemporaryDirectory(prefix="agnews-warm-") as temp:
        root = Path(temp)
        started = time.perf_counter()
        span1, window2 = in_fresh_process(build_windows, args.data, root)
        base = in_fresh_process(train_base, span1, root / "base", config)
        setup_s = time.perf_counter() - started
        runs = []
        for seed in range(1, args.seeds + 1):
            # Alternate which arm goes first, so neither always meets a warmer machine.
            arms = ((None, "cold"), (base, "warm"))
            for base_model, name in arms if seed % 2 else arms[::-1]:
                runs.append(
                    in_fresh_process(
                        run_arm, window2, str(root / f"{name}{seed}"), config, base_model, seed
                    )
                )
                print(f"seed {seed} {name}: {runs[-1]}", flush=True)
    summary = {}
    for arm in ("cold", "warm"):
        chosen = [run for run in runs if run["warm"] == (arm == "warm")]
        summary[arm] = {
            key: mean_se([run[key] for run in chosen])
            for key in ("epochs_to_best", "seconds_to_best", "best_eval_loss", "holdout_accuracy")
        }
    rows = [
        f"| {arm} | {s['epochs_to_best'][0]:.1f} ± {s['epochs_to_best'][1]:.1f} | "
        f"{s['seconds_to_best'][0]:.0f} ± {s['seconds_to_best'][1]:.0f} | "
        f"{s['best_eval_loss'][0]:.4f} ± {s['best_eval_loss'][1]:.4f} | "
        f"{s['holdout_accuracy'][0]:.4f} ± {s['holdout_accuracy'][1]:.4f} |"
        for arm, s in summary.items()
    ]
    cold, warm = summary["cold"], summary["warm"]
    accurate = warm["holdout_accuracy"][0] >= cold["holdout_accuracy"][0] - max(
        cold["holdout_accuracy"][1], warm["holdout_accuracy"][1]
    )
    faster = warm["epochs_to_best"][0] <= cold["epochs_to_best"][0] / 2
    table = "\n".join(
        [
            "| start | epochs to best eval loss | s to best | best eval loss | holdout accuracy |",
            "| --- | --- | --- | --- | --- |",
            *rows,
            "",
            f"{args.model}, {args.seeds} seeds (mean ± standard error), "
            f"budget {args.epochs} epochs, "
            f"patience {settings.DEFAULT_PATIENCE}; base model: run_fn on span 1 (first half of "
            f"{args.data.name}), window 2 = the whole file; set-up (2 Transforms + base) "
            f"{setup_s:.0f} s. Target (issue 18): warm within one SE of cold accuracy: "
            f"{'met' if accurate else 'NOT met'}; in at most half the epochs: "
            f"{'met' if faster else 'NOT met'}.",
        ]
    )
    publish(
        "warm_start",
        table,
        {
            "config": {**config, "seeds": args.seeds, "data": str(args.data)},
            "setup_s": setup_s,
            "summary": summary,
            "runs": runs,
        },
    )


if __name__ == "__main__":
    main()
