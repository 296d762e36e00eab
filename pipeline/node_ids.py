"""The pipeline's node ids: what ML Metadata records each execution under, and so what the run
log, the summary, the report and the runners look executions up by. Plain Python, so that they
import without TFX."""

from __future__ import annotations

import dataclasses

EXAMPLE_GEN = "FileBasedExampleGen"
IMPORT_SCHEMA_GEN = "ImportSchemaGen"
STATISTICS_GEN = "StatisticsGen"
EXAMPLE_VALIDATOR = "ExampleValidator"
ANOMALIES_GATE = "AnomaliesGate"
PREVIOUS_SPAN_STATISTICS = "previous_span_statistics"
DISTRIBUTION_VALIDATOR = "DistributionValidator"
DRIFT_GATE = "DriftGate"
SPAN_WINDOW = "span_window"
TRANSFORM = "Transform"
BASELINE_TRANSFORM = "baseline_transform"
SCORE_EXAMPLE_GEN = "score_example_gen"
BULK_INFERRER = "BulkInferrer"


def transform_cache(transform_id: str) -> str:
    """The resolver of a Transform's newest analyzer cache."""
    return f"{transform_id}_cache"


def report_evaluator(split: str) -> str:
    """The Evaluator that reports on `split` (holdout, test) without gating."""
    return f"{split}_evaluator"


@dataclasses.dataclass(frozen=True)
class PushNodes:
    """The ids of the nodes that transform for, train, gate and push one model: the run summary
    reads each model's outcome by them."""

    transform: str
    trainer: str
    last_pushed: str  # the resolver of the model's last push
    evaluator: str
    servability_gate: str
    pusher: str


MODEL_NODES = PushNodes(
    TRANSFORM, "Trainer", "last_pushed_model", "Evaluator", "ServabilityGate", "Pusher"
)
BASELINE_NODES = PushNodes(
    BASELINE_TRANSFORM,
    "baseline_trainer",
    "last_pushed_baseline",
    "baseline_evaluator",
    "baseline_servability_gate",
    "baseline_pusher",
)
TRAINERS = (MODEL_NODES.trainer, BASELINE_NODES.trainer)
