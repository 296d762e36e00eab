"""Runs the pipeline on this machine with LocalDagRunner, MLMD on sqlite and caching on."""
from __future__ import annotations

import dataclasses
import os

from tfx import v1 as tfx

from pipeline.config import PipelineConfig
from pipeline.pipeline import create_pipeline


@dataclasses.dataclass
class RunSummary:
    pushed: bool
    pushed_to: str | None
    eval_accuracy: float | None
    evaluation_uri: str | None


def run(config: PipelineConfig) -> RunSummary:
    os.makedirs(os.path.dirname(os.path.abspath(config.metadata_path)), exist_ok=True)
    metadata = tfx.orchestration.metadata.sqlite_metadata_connection_config(config.metadata_path)
    tfx.orchestration.LocalDagRunner().run(create_pipeline(config, metadata))
    return summarize(metadata)


def _latest_artifact(store, type_name: str):
    artifacts = store.get_artifacts_by_type(type_name)
    return max(artifacts, key=lambda a: a.id) if artifacts else None


def _overall_accuracy(evaluation_uri: str) -> float | None:
    """The candidate model's accuracy on the whole eval split, as TFMA stored it."""
    import tensorflow_model_analysis as tfma

    for metrics in tfma.load_metrics(evaluation_uri):
        if metrics.slice_key.single_slice_keys:
            continue
        for item in metrics.metric_keys_and_values:
            key = item.key
            if (key.name == "sparse_categorical_accuracy" and not key.is_diff
                    and key.model_name in ("", "candidate")):
                return item.value.double_value.value
    return None


def summarize(metadata_connection_config) -> RunSummary:
    """What the newest Evaluator and Pusher outputs in MLMD say about the last run."""
    from ml_metadata.metadata_store import metadata_store

    store = metadata_store.MetadataStore(metadata_connection_config)
    pushed_model = _latest_artifact(store, "PushedModel")
    evaluation = _latest_artifact(store, "ModelEvaluation")
    pushed = bool(pushed_model and pushed_model.custom_properties["pushed"].int_value)
    accuracy = _overall_accuracy(evaluation.uri) if evaluation else None
    return RunSummary(
        pushed=pushed,
        pushed_to=pushed_model.custom_properties["pushed_destination"].string_value
        if pushed else None,
        eval_accuracy=accuracy,
        evaluation_uri=evaluation.uri if evaluation else None)
