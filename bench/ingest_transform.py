"""Ingestion + Transform throughput: the pipeline's own ExampleGen and Transform components
under LocalDagRunner, on the shared 12k sample and on a 10x replicated copy (120k rows), with
Beam's DirectRunner in memory vs in 2 worker processes. Rows/s come from the component
executions' start and end times in MLMD.

    .venv/bin/python bench/ingest_transform.py [--data ../shared/data/ag_news/train_subset.csv.gz]
"""

from __future__ import annotations

# isort: off
import components  # noqa: F401  (Keras 2 before TensorFlow: see components/__init__.py)

# isort: on
import argparse
import gzip
import tempfile
from pathlib import Path

from ml_metadata.metadata_store import metadata_store
from publish import publish
from tfx.orchestration.local.local_dag_runner import LocalDagRunner

from pipeline import node_ids
from pipeline.config import PipelineConfig
from pipeline.metadata_connection import connection_config
from pipeline.pipeline import create_pipeline

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared/data/ag_news/train_subset.csv.gz"
MODES = {
    "in_memory": ["--direct_running_mode=in_memory"],
    "multi_processing x2": ["--direct_running_mode=multi_processing", "--direct_num_workers=2"],
}
TIMED = (node_ids.EXAMPLE_GEN, node_ids.TRANSFORM)


def ingest_and_transform_seconds(
    data_dir: Path, beam_args: list[str], work: Path
) -> dict[str, float]:
    """Runs the real pipeline up to Transform (statistics and validation included); seconds of
    ExampleGen and Transform."""
    config = PipelineConfig(
        data=str(data_dir),
        pipeline_root=str(work / "root"),
        beam_args=beam_args,
        enable_cache=False,
    )
    metadata = connection_config(str(work / "m.sqlite"))
    LocalDagRunner().run(create_pipeline(config, metadata, through_transform_only=True))
    store = metadata_store.MetadataStore(metadata)
    seconds = {}
    for node in TIMED:
        context = store.get_context_by_type_and_name("node", f"{config.pipeline_name}.{node}")
        (execution,) = store.get_executions_by_context(context.id)
        seconds[node] = (
            execution.last_update_time_since_epoch - execution.create_time_since_epoch
        ) / 1000
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--copies", type=int, default=10)
    args = parser.parse_args()
    with gzip.open(args.data, "rb") as f:
        lines = f.read().splitlines()
    results = []
    with tempfile.TemporaryDirectory() as temp:
        for copies in (1, args.copies):
            data_dir = Path(temp) / f"x{copies}"
            data_dir.mkdir()
            (data_dir / "train.csv").write_bytes(b"\n".join(lines * copies) + b"\n")
            for mode, beam_args in MODES.items():
                work = Path(temp) / f"run-x{copies}-{mode.split()[0]}"
                seconds = ingest_and_transform_seconds(data_dir, beam_args, work)
                rows = len(lines) * copies
                results.append(
                    {
                        "rows": rows,
                        "mode": mode,
                        **{f"{k}_s": v for k, v in seconds.items()},
                        "rows_per_s": rows / sum(seconds.values()),
                    }
                )
                print(results[-1], flush=True)
    table = [
        "| rows | DirectRunner mode | ExampleGen s | Transform s | ingest + Transform rows/s |",
        "| --- | --- | --- | --- | --- |",
    ]
    table += [
        f"| {r['rows']:,} | {r['mode']} | {r['FileBasedExampleGen_s']:.1f} "
        f"| {r['Transform_s']:.1f} | {r['rows_per_s']:,.0f} |"
        for r in results
    ]
    publish("ingest_transform", "\n".join(table), results)


if __name__ == "__main__":
    main()
