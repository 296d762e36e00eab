"""`agnews score` throughput next to the in-process ceiling, on the shared 12k sample repeated
10x (~120k rows): the pushed SavedModel's batch_scoring signature called directly at batch 256
on the same rows (the ceiling), then `agnews score` (Beam DirectRunner in memory, and in 2
worker processes), then where the difference goes: the per-row Python work of parsing a line
into a tf.Example and of turning a PredictionLog into a CSV line, timed alone in this process;
the rest is Beam (shuffling, batching, PredictionLog building, writing).

    .venv/bin/python bench/score.py [--model artifacts/serving/agnews]
        [--data ...train_subset.csv.gz]

Without a pushed model at --model, it first runs `agnews run` on --data (no baseline) to push one.
"""

from __future__ import annotations

# isort: off
import components  # noqa: F401  (Keras 2 before TensorFlow: see components/__init__.py)

# isort: on
import argparse
import gzip
import os
import shutil
import tempfile
import time
from pathlib import Path

import tensorflow as tf
from publish import publish

from agnews import score, versions
from components import features
from components import rows as row_parsing
from pipeline import scores
from pipeline.config import PipelineConfig

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared/data/ag_news/train_subset.csv.gz"
BATCH = score.BATCH_SIZE
MODES = {
    "1 worker (in_memory)": ["--direct_running_mode=in_memory"],
    "2 workers (multi_processing)": [
        "--direct_running_mode=multi_processing",
        "--direct_num_workers=2",
    ],
}


def ceiling(version_dir: str, examples: list[bytes]) -> float:
    """Examples/s of the batch_scoring signature called directly at batch BATCH (after one
    warm-up batch), the serialized examples already in memory."""
    signature = tf.saved_model.load(version_dir).signatures[features.BATCH_SCORING]
    signature(examples=tf.constant(examples[:BATCH]))
    start = time.perf_counter()
    for i in range(0, len(examples), BATCH):
        signature(examples=tf.constant(examples[i : i + BATCH]))
    return len(examples) / (time.perf_counter() - start)


def model_version_dir(model: str, data: Path, work: Path) -> str:
    """The newest version under `model`, else one pushed by a pipeline run on `data`."""
    if versions.model_versions(model) or tf.io.gfile.exists(os.path.join(model, "saved_model.pb")):
        return versions.resolve_version_dir(model)
    from agnews import cli

    (work / "data").mkdir(parents=True)
    shutil.copy(data, work / "data" / "train.csv.gz")
    assert (
        cli.main(
            [
                "run",
                "--data",
                str(work / "data"),
                "--pipeline-root",
                str(work / "root"),
                "--metadata-path",
                str(work / "metadata.sqlite"),
                "--serving-dir",
                str(work / "serving"),
                "--no-baseline",
                "--require-push",
            ]
        )
        == 0
    )
    return versions.resolve_version_dir(str(work / "serving"))


def per_row_seconds(function, items) -> float:
    start = time.perf_counter()
    for item in items:
        function(item)
    return (time.perf_counter() - start) / len(items)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=PipelineConfig().serving_dir)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--copies", type=int, default=10)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    model_work = Path(tempfile.mkdtemp(prefix="bench_score_model_"))
    version_dir = model_version_dir(args.model, args.data, model_work)
    with gzip.open(args.data, "rb") as f:
        lines = f.read().splitlines() * args.copies
    rows = len(lines)
    parse_s = per_row_seconds(
        lambda item: row_parsing.make_example(
            *row_parsing.parse_line(item[1]), source=("train.csv", item[0])
        ),
        list(enumerate(lines[:20_000], start=1)),
    )
    examples = [
        row_parsing.make_example(
            *row_parsing.parse_line(line), source=("train.csv", number)
        ).SerializeToString()
        for number, line in enumerate(lines, start=1)
    ]
    ceiling_per_s = ceiling(version_dir, examples)
    print(f"ceiling: {ceiling_per_s:,.0f} examples/s", flush=True)

    results = []
    with tempfile.TemporaryDirectory() as temp:
        data = Path(temp) / "train.csv"
        data.write_bytes(b"\n".join(lines) + b"\n")
        for mode, beam_args in MODES.items():
            out = Path(temp) / f"out-{len(results)}"
            start = time.perf_counter()
            summary = score.score([str(data)], version_dir, str(out), beam_args)
            seconds = time.perf_counter() - start
            assert summary.scored == rows, summary.rows
            results.append(
                {
                    "mode": mode,
                    "rows": rows,
                    "seconds": seconds,
                    "examples_per_s": rows / seconds,
                    "share_of_ceiling": rows / seconds / ceiling_per_s,
                    "model_loads": summary.model_loads,
                    "shards": len(summary.scores),
                }
            )
            print(results[-1], flush=True)
        small = Path(temp) / "small.csv"  # PredictionLogs to time the CSV conversion on (not timed)
        small.write_bytes(b"\n".join(lines[:5_000]) + b"\n")
        logged = score.score(
            [str(small)], version_dir, str(Path(temp) / "logs"), prediction_logs=True
        )
        logs = [
            record.numpy()
            for record in tf.data.TFRecordDataset(logged.prediction_logs, compression_type="GZIP")
        ]
        from tensorflow_serving.apis import prediction_log_pb2

        to_csv_s = per_row_seconds(
            lambda record: scores.score_line(
                prediction_log_pb2.PredictionLog.FromString(record), "1"
            ),
            logs,
        )

    one = results[0]
    model_s, parse_total_s, csv_total_s = rows / ceiling_per_s, parse_s * rows, to_csv_s * rows
    breakdown = {
        "model_s": model_s,
        "parse_s": parse_total_s,
        "to_csv_s": csv_total_s,
        "beam_and_writing_s": one["seconds"] - model_s - parse_total_s - csv_total_s,
    }
    load = os.getloadavg()[0]
    table = [
        f"| run | examples/s | share of the ceiling | seconds for {rows:,} rows | model loads |",
        "| --- | --- | --- | --- | --- |",
        f"| ceiling: batch_scoring signature called directly, batch {BATCH} "
        f"| {ceiling_per_s:,.0f} | 100% | {model_s:.1f} | 1 |",
    ]
    table += [
        f"| `agnews score`, {r['mode']} | {r['examples_per_s']:,.0f} | {r['share_of_ceiling']:.0%} "
        f"| {r['seconds']:.1f} | {r['model_loads']} |"
        for r in results
    ]
    table += [
        "",
        f"Where the 1-worker run's {one['seconds']:.1f} s go: the model "
        f"{model_s:.1f} s (the ceiling's time), parsing lines into tf.Examples "
        f"{parse_total_s:.1f} s ({parse_s * 1e6:.0f} µs/row), PredictionLogs to CSV lines "
        f"{csv_total_s:.1f} s ({to_csv_s * 1e6:.0f} µs/row), and the remaining "
        f"{breakdown['beam_and_writing_s']:.1f} s Beam itself (reshuffle, batching, tfx_bsl "
        "building a PredictionLog per row, writing the CSV shards) and the pipeline's start "
        "(model load included).",
        "",
        f"Conditions: {rows:,} rows (the shared 12k sample x{args.copies}), one plain CSV file; "
        f"model {version_dir}; DirectRunner; CSV scores only (no PredictionLogs); "
        f"wall time of `agnews.score.score` including pipeline start and model load; "
        f"2 cores; 1-minute load average {load_before:.2f} before the start (other work on the "
        f"machine) and {load:.2f} at the end (this bench's own); one run.",
    ]
    publish(
        "score",
        "\n".join(table),
        {
            "ceiling_examples_per_s": ceiling_per_s,
            "runs": results,
            "breakdown_1_worker": breakdown,
            "load_average_1m_before": load_before,
            "load_average_1m_end": load,
            "model": version_dir,
        },
    )
    shutil.rmtree(model_work, ignore_errors=True)


if __name__ == "__main__":
    main()
