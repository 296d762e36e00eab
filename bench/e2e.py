"""A whole `agnews run`, component by component, on the embedded 3k sample and the shared 12k one.

Each run is `agnews run` in a fresh process and a fresh directory (no cache, no earlier model:
the run a new user makes first), with its defaults otherwise. The command's wall and CPU time
are measured from outside (as /usr/bin/time does); each component's wall seconds come from ML
Metadata and its CPU seconds from what `agnews run` recorded there; the model's training time
is the sum of its epochs (validation included) from the Trainer's history. The share of the
run that is training is the figure issue 27 targets (a run close to its training time).

Each sample runs with `--workers` as given (by default: agnews run's default, one more than the
cores, components at once in processes of their own, then 1: TFX's LocalDagRunner, one after
the other in one process), so the table compares them on the same machine within minutes.

    .venv/bin/python bench/e2e.py [--data PATH] [--only 3k|12k] [--workers N [N ...]]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from publish import publish

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from components import settings  # noqa: E402
from components.artifacts import CPU_SECONDS_PROPERTY  # noqa: E402
from pipeline import metadata, node_ids, run_log  # noqa: E402

AGNEWS = str(Path(sys.executable).with_name("agnews"))
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared/data/ag_news/train_subset.csv.gz"


def run_once(work: Path, data: Path | None, extra: tuple[str, ...] = ()) -> dict:
    """`agnews run EXTRA` on `data` (a train file; None: the embedded sample) under `work`."""
    args = [
        AGNEWS,
        "run",
        *("--pipeline-root", str(work / "pipeline")),
        *("--metadata-path", str(work / "metadata.sqlite")),
        *("--serving-dir", str(work / "serving" / "agnews")),
        *extra,
    ]
    if data is not None:
        (work / "data").mkdir()
        shutil.copy(data, work / "data" / "train.csv.gz")
        args += ["--data", str(work / "data")]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, env=os.environ)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"agnews run failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    store = metadata.open_store(str(work / "metadata.sqlite"))
    run_id = metadata.latest_run_id(store, "agnews")
    executions = metadata.executions_in_run(store, "agnews", run_id)
    first_start = min(e.create_time_since_epoch for e in executions.values())
    components = {
        node: {
            "outcome": metadata.outcome(e),
            # When it started, from the run's first component: shows which ran at once.
            "started_s": (e.create_time_since_epoch - first_start) / 1000,
            "wall_s": (e.last_update_time_since_epoch - e.create_time_since_epoch) / 1000,
            "cpu_s": e.custom_properties[CPU_SECONDS_PROPERTY].double_value
            if CPU_SECONDS_PROPERTY in e.custom_properties
            else None,
        }
        for node, e in executions.items()
    }
    epochs = run_log.training_seconds(store, "agnews", run_id)
    train_rows = _train_examples(store, run_id)
    steady = sorted(epochs[1:])[len(epochs[1:]) // 2] if len(epochs) > 1 else None
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "cpu_percent": 100 * cpu / wall,
        "epochs": len(epochs),
        "training_s": sum(epochs),
        "first_epoch_s": epochs[0] if epochs else None,
        "train_examples": train_rows,
        # The median epoch after the first (which traces the graphs), per 1,000 train examples,
        # its validation pass included: bench/train_vs_seed.py gives plain Keras's figure.
        "steady_epoch_s_per_1000": 1000 * steady / train_rows if steady else None,
        "wall_over_training": wall / sum(epochs) if epochs else None,
        "components": components,
        "profile_line": next(
            (line for line in done.stdout.splitlines() if line.startswith("Profile:")), ""
        ),
    }


def _seconds(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def _train_examples(store, run_id: int) -> int:
    """The train split's examples in the model Transform's output of run `run_id`."""
    import tensorflow as tf

    transformed = metadata.output_in_run(store, "agnews", run_id, node_ids.TRANSFORM, "Examples")
    files = tf.io.gfile.glob(f"{transformed.uri}/Split-train/*")
    return sum(1 for _ in tf.data.TFRecordDataset(files, compression_type="GZIP"))


def table(results: dict[str, dict]) -> str:
    names = list(results)
    nodes = list(dict.fromkeys(node for r in results.values() for node in r["components"]))
    header = "| component | " + " | ".join(f"{n} wall s | {n} CPU s" for n in names) + " |"
    lines = [header, "|" + " --- |" * (1 + 2 * len(names))]
    for node in nodes:
        cells = []
        for name in names:
            c = results[name]["components"].get(node)
            cells += [f"{c['wall_s']:.1f}", _seconds(c["cpu_s"])] if c else ["–", "–"]
        lines.append(f"| {node} | " + " | ".join(cells) + " |")
    rows = [
        ("**whole command** (wall / CPU)", lambda r: (f"{r['wall_s']:.1f}", f"{r['cpu_s']:.1f}")),
        ("CPU over wall", lambda r: ("", f"{r['cpu_percent']:.0f}%")),
        (
            "the model's epochs (number / seconds)",
            lambda r: (str(r["epochs"]), f"{r['training_s']:.1f}"),
        ),
        (
            "steady epoch (median after the first) per 1,000 train examples",
            lambda r: (
                str(r["train_examples"]),
                "–"
                if r["steady_epoch_s_per_1000"] is None
                else f"{r['steady_epoch_s_per_1000']:.2f} s",
            ),
        ),
        (
            "whole command over training",
            lambda r: ("", f"{r['wall_over_training']:.2f}x" if r["wall_over_training"] else "–"),
        ),
    ]
    for label, cells_of in rows:
        lines.append(
            f"| {label} | " + " | ".join(" | ".join(cells_of(results[n])) for n in names) + " |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the 12k train file")
    parser.add_argument("--only", choices=["3k", "12k"])
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[settings.DEFAULT_WORKERS, 1], metavar="N"
    )
    args = parser.parse_args()
    samples = {"3k": None, "12k": args.data}
    results = {}
    for name, data in samples.items():
        if args.only and name != args.only:
            continue
        for workers in args.workers:
            arm = f"{name}, {workers} worker{'s' if workers > 1 else ''}"
            with tempfile.TemporaryDirectory(prefix=f"agnews-e2e-{name}-") as temp:
                print(f"agnews run on the {name} sample, --workers {workers} ...", flush=True)
                results[arm] = run_once(Path(temp), data, ("--workers", str(workers)))
                print(results[arm]["profile_line"], flush=True)
    conditions = (
        f"{platform.node()}, {os.cpu_count()} cores, {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d')}; one run each in a fresh directory (nothing cached, no "
        "earlier model; the drift checks skip, a first span having nothing to compare with), "
        "default settings but --workers"
    )
    publish(
        "e2e",
        "# `agnews run` profile\n\n" + conditions + "\n\n" + table(results),
        {"conditions": conditions, "results": results},
    )


if __name__ == "__main__":
    main()
