"""Runs the pipeline on this machine with ParallelDagRunner (LocalDagRunner's loop, each component
in a process of its own, independent ones at once) or LocalDagRunner itself, ML Metadata on
sqlite (or a server) and caching on."""

from __future__ import annotations

import dataclasses
import functools
import os

from components import settings, trainer
from components.artifacts import (
    PUSHED_DESTINATION_PROPERTY,
    PUSHED_PROPERTY,
    REJECTED_FILE_NAME,
    read_summary,
)
from components.servability import REASON_PROPERTY
from pipeline import beam_packaging, metadata, metadata_connection
from pipeline.config import PipelineConfig
from pipeline.node_ids import (
    BASELINE_NODES,
    DISTRIBUTION_VALIDATOR,
    EXAMPLE_GEN,
    MODEL_NODES,
    PushNodes,
)
from pipeline.parallel_runner import ParallelDagRunner
from pipeline.pipeline import create_pipeline


@dataclasses.dataclass
class PushSummary:
    """What became of one trained model at its gates in the run."""

    pushed: bool = False
    pushed_to: str | None = None
    evaluation_uri: str | None = None
    not_servable_reason: str | None = None  # why the servability gate refused the model
    evaluation: object | None = None  # the Evaluator's ModelEvaluation artifact (MLMD)
    gate_failures: list[str] = dataclasses.field(default_factory=list)  # why it was not blessed


@dataclasses.dataclass
class RunSummary(PushSummary):
    """The run, and what became of its model (the PushSummary fields)."""

    # ExampleGen's count per outcome: accepted or a rejection reason.
    rows: dict[str, int] = dataclasses.field(default_factory=dict)
    rejected_rows_file: str | None = None
    baseline: PushSummary | None = None  # with push_baseline: what became of the baseline
    scores_file: str | None = None  # with --score: BulkInferrer's scores as CSV next to the report
    scores_note: str | None = None  # with --score: where the scores are, or why there are none
    span: int | None = None  # the span this run ingested
    window: list[int] = dataclasses.field(default_factory=list)  # the spans the model trained on
    drift_checked: bool = False  # False for the first span: no earlier span to compare with
    trained: bool = False  # False: nothing new (the served model was trained on this window)


def run(config: PipelineConfig, workers: int = settings.DEFAULT_WORKERS) -> RunSummary:
    """Runs the pipeline, up to `workers` components at once, each in a child process; with 1,
    or when this process already runs TensorFlow (it could not fork safely), TFX's
    LocalDagRunner runs them one after the other in this process."""
    os.makedirs(config.run_dir, exist_ok=True)
    config = for_beam_workers(config)
    # Built first: building it may run TensorFlow (a TFDS dataset's preparation).
    pipeline = create_pipeline(
        config, metadata_connection.connection_config(config.metadata_address)
    )
    runner = ParallelDagRunner(workers)
    if not runner.forks():
        # One process for every component: the Trainer's strategy must be settled before the
        # first of them runs a TensorFlow op (which then keeps the runner from forking).
        trainer.distribution_strategy()
    runner.run(pipeline)
    summary = summarize(config.metadata_address, config.pipeline_name)
    if config.score:
        from pipeline import scores

        summary.scores_file, summary.scores_note = scores.write_pipeline_scores(
            config.run_dir, config.pipeline_name, config.metadata_address
        )
    return summary


def for_beam_workers(config: PipelineConfig) -> PipelineConfig:
    """`config` with an agnews wheel for remote Beam workers when they need one (see
    beam_packaging), built next to the run's metadata (artifacts/dist by default)."""
    wheel_dir = os.path.join(config.run_dir, "dist")
    return dataclasses.replace(
        config, beam_args=beam_packaging.with_wheel(config.beam_args, wheel_dir)
    )


def summarize(metadata_address: str, pipeline_name: str) -> RunSummary:
    """What ExampleGen, the gates, the Evaluators and Pushers output in the newest run recorded
    in MLMD (the metrics themselves are read by pipeline.report)."""
    store = metadata.open_store(metadata_address)
    run_id = metadata.latest_run_id(store, pipeline_name)
    latest = functools.partial(metadata.output_in_run, store, pipeline_name, run_id)
    model = latest(MODEL_NODES.trainer, "Model")
    validator = metadata.execution_in_run(store, pipeline_name, run_id, DISTRIBUTION_VALIDATOR)
    examples = latest(EXAMPLE_GEN, "Examples")
    return RunSummary(
        **vars(push_summary(latest, MODEL_NODES)),
        baseline=push_summary(latest, BASELINE_NODES)
        if metadata.execution_in_run(store, pipeline_name, run_id, BASELINE_NODES.pusher)
        else None,
        rows=read_summary(examples.uri) if examples else {},
        rejected_rows_file=os.path.join(examples.uri, REJECTED_FILE_NAME) if examples else None,
        span=metadata.span(examples) if examples else None,
        window=sorted(
            metadata.span(a)
            for a in store.get_artifacts_by_id(list(metadata.training_window(store, model.id)))
        )
        if model
        else [],
        drift_checked=bool(
            validator and metadata.inputs(store, validator.id, "baseline_statistics")
        ),
        trained=model is not None,
    )


def push_summary(latest, nodes: PushNodes) -> PushSummary:
    """What the gates and Pusher of `nodes` output; `latest(node_id, type_name)` reads one
    output of the run."""
    pushed_model = latest(nodes.pusher, "PushedModel")
    evaluation = latest(nodes.evaluator, "ModelEvaluation")
    servability = latest(nodes.servability_gate, "InfraBlessing")
    pushed = bool(pushed_model and pushed_model.custom_properties[PUSHED_PROPERTY].int_value)
    return PushSummary(
        pushed=pushed,
        pushed_to=pushed_model.custom_properties[PUSHED_DESTINATION_PROPERTY].string_value
        if pushed
        else None,
        evaluation_uri=evaluation.uri if evaluation else None,
        not_servable_reason=servability.custom_properties[REASON_PROPERTY].string_value
        if servability and REASON_PROPERTY in servability.custom_properties
        else None,
        evaluation=evaluation,
        gate_failures=gate_failures(evaluation.uri) if evaluation else [],
    )


def gate_failures(evaluation_uri: str) -> list[str]:
    """Each bar of the Evaluator's gate (pipeline.eval_config) that the model did not clear,
    with the figure TFMA judged, e.g. 'eval accuracy 0.5523 is below the bar 0.6'."""
    import tensorflow_model_analysis as tfma

    lines = []
    for per_slice in tfma.load_validation_result(evaluation_uri).metric_validations_per_slice:
        for failure in per_slice.failures:
            value, bar = failure.metric_value.double_value.value, failure.metric_threshold
            if failure.metric_key.is_diff:
                lines.append(
                    f"eval accuracy {value:+.4f} against the last pushed model's, a "
                    f"larger drop than the {-bar.change_threshold.absolute.value:g} allowed"
                )
            else:
                lines.append(
                    f"eval accuracy {value:.4f} is below the bar "
                    f"{bar.value_threshold.lower_bound.value:g}"
                )
    return lines
