"""Wall time of `agnews` commands next to what they cannot avoid, measured in one run.

Each command runs in a fresh process, as a user types it. `agnews predict` is measured to the
moment its prediction line is printed, beside `import tensorflow` and `import tensorflow` plus
loading the same SavedModel. The cached run repeats `agnews run` on unchanged data after one
run that settles the cache (a model's first rerun evaluates it against itself as the new
baseline). Needs a pushed model in --run-dir: run `make run` first.

    .venv/bin/python bench/cli.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from publish import publish

PROJECT = Path(__file__).resolve().parents[1]
AGNEWS = str(Path(sys.executable).with_name("agnews"))
HEADLINE = "Stocks slide as oil prices climb"
ENV = {**os.environ, "TF_USE_LEGACY_KERAS": "1"}


def wall_seconds(command: list[str], until: str | None = None) -> float:
    """Seconds from start to exit, or to the first stdout line containing `until`."""
    started = time.perf_counter()
    with subprocess.Popen(
        command, cwd=PROJECT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    ) as process:
        for line in process.stdout:
            if until is not None and until in line:
                seconds = time.perf_counter() - started
                process.stdout.read()
                break
        else:
            seconds = time.perf_counter() - started
        if process.wait() != 0:
            raise SystemExit(f"{' '.join(command)} failed with exit code {process.returncode}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--run-dir", default="artifacts", help="Where `make run` wrote its outputs."
    )
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    serving_dir = str(PROJECT / args.run_dir / "serving" / "agnews")
    versions = sorted(
        (p for p in Path(serving_dir).iterdir() if p.name.isdigit()), key=lambda p: int(p.name)
    )
    if not versions:
        raise SystemExit(f"No pushed model under {serving_dir}: run `make run` first.")
    load = f"import tensorflow as tf; tf.saved_model.load({str(versions[-1])!r})"
    run_args = [
        AGNEWS,
        "run",
        "--pipeline-root",
        f"{args.run_dir}/pipeline",
        "--metadata-path",
        f"{args.run_dir}/metadata.sqlite",
        "--serving-dir",
        serving_dir,
    ]
    cases = [
        ('python -c "import tensorflow"', [sys.executable, "-c", "import tensorflow"], None),
        ("import tensorflow + load the SavedModel", [sys.executable, "-c", load], None),
        ("agnews --help", [AGNEWS, "--help"], None),
        ("agnews run --help", [AGNEWS, "run", "--help"], None),
        (
            "agnews predict (to the prediction printed)",
            [AGNEWS, "predict", "--model", serving_dir, HEADLINE],
            HEADLINE,
        ),
        ("agnews report", [AGNEWS, "report", args.run_dir], None),
    ]
    rows = []
    for name, command, until in cases:
        times = [wall_seconds(command, until) for _ in range(args.repeats)]
        rows.append(
            {
                "command": name,
                "median_s": statistics.median(times),
                "min_s": min(times),
                "runs": len(times),
            }
        )
        print(f"{name}: {', '.join(f'{t:.2f}' for t in times)} s", flush=True)
    wall_seconds(run_args)  # settles the cache
    cached = [wall_seconds(run_args) for _ in range(args.repeats)]
    rows.append(
        {
            "command": "agnews run, every component cached",
            "median_s": statistics.median(cached),
            "min_s": min(cached),
            "runs": len(cached),
        }
    )

    by_name = {row["command"]: row["median_s"] for row in rows}
    budget = by_name["import tensorflow + load the SavedModel"] + 1
    conditions = (
        f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d')}; each command in a fresh process, "
        f"{args.repeats} runs, median and fastest"
    )
    table = "\n".join(
        [
            f"agnews command wall times ({conditions})",
            "",
            "| command | median s | fastest s |",
            "| --- | --- | --- |",
            *(f"| {row['command']} | {row['median_s']:.2f} | {row['min_s']:.2f} |" for row in rows),
            "",
            f"predict budget (import tensorflow + load + 1 s): {budget:.2f} s; "
            f"predict took {by_name['agnews predict (to the prediction printed)']:.2f} s.",
        ]
    )
    publish("cli", table, {"conditions": conditions, "rows": rows, "predict_budget_s": budget})


if __name__ == "__main__":
    main()
