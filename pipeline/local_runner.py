"""Runs the pipeline on this machine with LocalDagRunner, MLMD on sqlite and caching on."""
from __future__ import annotations

import dataclasses
import os

from tfx import v1 as tfx

from components import ingest
from pipeline.config import PipelineConfig
from pipeline.pipeline import create_pipeline


@dataclasses.dataclass
class RunSummary:
    pushed: bool
    pushed_to: str | None
    evaluation_uri: str | None
    rows: dict[str, int]  # ExampleGen's count per outcome: accepted or a rejection reason
    rejected_rows_file: str | None


def run(config: PipelineConfig) -> RunSummary:
    os.makedirs(os.path.dirname(os.path.abspath(config.metadata_path)), exist_ok=True)
    metadata = tfx.orchestration.metadata.sqlite_metadata_connection_config(config.metadata_path)
    tfx.orchestration.LocalDagRunner().run(create_pipeline(config, metadata))
    return summarize(metadata, config.pipeline_name)


def latest_output(store, pipeline_name: str, node_id: str, type_name: str):
    """The newest artifact of `type_name` around pipeline node `node_id` in MLMD, or None."""
    context = store.get_context_by_type_and_name("node", f"{pipeline_name}.{node_id}")
    if context is None:
        return None
    type_id = store.get_artifact_type(type_name).id
    artifacts = [a for a in store.get_artifacts_by_context(context.id) if a.type_id == type_id]
    return max(artifacts, key=lambda a: a.id) if artifacts else None


def summarize(metadata_connection_config, pipeline_name: str) -> RunSummary:
    """What the newest outputs of ExampleGen, the Evaluator and Pusher in MLMD say (the
    metrics themselves are read by pipeline.report)."""
    import functools

    from ml_metadata.metadata_store import metadata_store

    latest = functools.partial(latest_output, metadata_store.MetadataStore(metadata_connection_config),
                               pipeline_name)
    pushed_model = latest("Pusher", "PushedModel")
    evaluation = latest("Evaluator", "ModelEvaluation")
    examples = latest("FileBasedExampleGen", "Examples")
    pushed = bool(pushed_model and pushed_model.custom_properties["pushed"].int_value)
    return RunSummary(
        pushed=pushed,
        pushed_to=pushed_model.custom_properties["pushed_destination"].string_value
        if pushed else None,
        evaluation_uri=evaluation.uri if evaluation else None,
        rows=ingest.read_summary(examples.uri) if examples else {},
        rejected_rows_file=os.path.join(examples.uri, ingest.REJECTED_FILE_NAME) if examples else None)
