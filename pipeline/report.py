"""The run report a person reads: report.md with the headline table, per-class metrics and
slices, plus PNG plots of the training curves and the confusion matrix.

Everything comes from what the run stored: MLMD for which artifacts are the newest, TFMA's
evaluation (metrics and plots) and the Trainer's Keras history. TFMA is read once per
evaluation, by the run that made it, and kept as JSON beside the report, so `agnews report`
rewrites the report without importing TFMA, TFX or Beam.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from components import features, settings  # noqa: E402
from components.artifacts import (  # noqa: E402
    ACCEPTED,
    BLESSED_PROPERTY,
    CPU_SECONDS_PROPERTY,
    PUSHED_DESTINATION_PROPERTY,
    PUSHED_PROPERTY,
    PUSHED_VERSION_PROPERTY,
    read_history,
    read_summary,
    rejected_counts,
)
from pipeline import metadata, metadata_connection, node_ids  # noqa: E402

REPORT_DIR_NAME = "report"  # <run dir>/report/
REPORT_FILE_NAME = "report.md"
EVALUATIONS_DIR_NAME = "evaluations"  # <report dir>/evaluations/<key>.json
DRIFT_DIR_NAME = "drift"  # <report dir>/drift/<key>.json
CURVES_FILE_NAME = "training_curves.png"
CONFUSION_FILE_NAME = "confusion_matrix.png"
ACCURACY_OVER_SPANS_PLOT = "accuracy_over_spans.png"
ACCURACY = "sparse_categorical_accuracy"


@dataclasses.dataclass
class Evaluation:
    """One TFMA evaluation: metrics per slice ('' = overall) and the confusion matrix."""

    metrics: dict[str, dict[str, float]]  # slice -> metric name -> value
    confusion: np.ndarray  # [actual, predicted] example counts
    baseline: dict[str, float] = dataclasses.field(default_factory=dict)  # TFMA's baseline, overall

    @property
    def per_class(self) -> dict[str, dict[int, float | None]]:
        """Precision, recall and F1 of each class (metric -> class id -> value; None where
        undefined), from the confusion matrix, the predicted class being the top one. TFMA's
        Keras Precision/Recall with class_id and top_k read the integer labels wrongly (recall
        1.0 for every class of a model that predicted one class), so they are not computed."""
        true, predicted, right = (
            self.confusion.sum(1),
            self.confusion.sum(0),
            self.confusion.diagonal(),
        )
        found: dict[str, dict[int, float | None]] = {"precision": {}, "recall": {}, "f1_score": {}}
        for i in range(features.NUM_CLASSES):
            precision = right[i] / predicted[i] if predicted[i] else None
            recall = right[i] / true[i] if true[i] else None
            found["precision"][i], found["recall"][i] = precision, recall
            found["f1_score"][i] = (
                2 * precision * recall / (precision + recall)
                if precision is not None and recall is not None and precision + recall
                else None
            )
        return found


def _slice_name(slice_key) -> str:
    parts = []
    for key in slice_key.single_slice_keys:
        value = (
            key.bytes_value.decode()
            if key.HasField("bytes_value")
            else (key.int64_value if key.HasField("int64_value") else key.float_value)
        )
        if key.column == features.LABEL_KEY:
            value = features.LABEL_NAMES[int(value)]
        parts.append(f"{key.column}={value}")
    return ", ".join(parts)


def load_evaluation(uri: str) -> Evaluation:
    """Reads a TFMA evaluation with TFMA itself (imported here: it loads Beam and TFX)."""
    import tensorflow_model_analysis as tfma

    metrics: dict[str, dict[str, float]] = collections.defaultdict(dict)
    baseline: dict[str, float] = {}
    for for_slice in tfma.load_metrics(uri):
        name = _slice_name(for_slice.slice_key)
        for item in for_slice.metric_keys_and_values:
            key = item.key
            if key.is_diff or not item.value.HasField("double_value"):
                continue
            if key.model_name == "baseline":
                if not name and not key.sub_key.HasField("class_id"):
                    baseline[key.name] = item.value.double_value.value
                continue
            if not key.sub_key.HasField("class_id"):
                metrics[name][key.name] = item.value.double_value.value
    confusion = np.zeros((features.NUM_CLASSES, features.NUM_CLASSES))
    for for_slice in tfma.load_plots(uri):
        if for_slice.slice_key.single_slice_keys:
            continue
        for item in for_slice.plot_keys_and_values:
            if item.key.model_name not in ("", "candidate"):
                continue
            matrices = item.value.multi_class_confusion_matrix_at_thresholds.matrices
            for entry in matrices[0].entries if matrices else []:  # threshold 0: the top class
                if (
                    0 <= entry.actual_class_id < features.NUM_CLASSES
                    and 0 <= entry.predicted_class_id < features.NUM_CLASSES
                ):
                    confusion[entry.actual_class_id, entry.predicted_class_id] = (
                        entry.num_weighted_examples
                    )
    return Evaluation(dict(metrics), confusion, baseline)


def _cache_path(cache_dir: Path, artifact) -> Path:
    """Where what is read from an artifact is kept: keyed by its URI and creation time, as ids
    restart in each ML Metadata store."""
    key = hashlib.sha256(f"{artifact.uri}\n{artifact.create_time_since_epoch}".encode()).hexdigest()
    return cache_dir / f"{key[:24]}.json"


def cached_drift(store, pipeline_name: str, run_id: int, cache_dir: Path) -> list[str]:
    """The drift gate's figures for the run's span (one line per check, e.g. 'label:
    infinity_norm 0.052 <= threshold 0.12'), or a line saying there was no previous span; read
    with TFDV the first time, then from the cache."""
    validator = metadata.execution_in_run(
        store, pipeline_name, run_id, node_ids.DISTRIBUTION_VALIDATOR
    )
    gate = metadata.execution_in_run(store, pipeline_name, run_id, node_ids.DRIFT_GATE)
    anomalies = metadata.output_in_run(
        store, pipeline_name, run_id, node_ids.DISTRIBUTION_VALIDATOR, "ExampleAnomalies"
    )
    if validator is None or gate is None or anomalies is None:
        return []
    inputs = {
        key: store.get_artifacts_by_id(metadata.inputs(store, validator.id, key))
        for key in ("statistics", "baseline_statistics")
    }
    if not inputs["baseline_statistics"]:
        return ["first span: no earlier span to compare with"]
    path = _cache_path(cache_dir, anomalies)
    if path.exists():
        return json.loads(path.read_text())
    from components import drift

    lines = [
        str(d)
        for d in drift.describe_drift(
            anomalies.uri,
            inputs["statistics"][0].uri,
            inputs["baseline_statistics"][0].uri,
            drift.parse_checks(
                gate.properties["thresholds"].string_value
                or gate.custom_properties["thresholds"].string_value
            ),
        )
    ]
    cache_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(lines))
    return lines


def cached_evaluation(artifact, cache_dir: Path) -> Evaluation:
    """The evaluation of a ModelEvaluation artifact, read with TFMA the first time and from
    `cache_dir/<key>.json` after that (an artifact's files never change). The key is the
    artifact's URI and creation time: ids restart in each ML Metadata store."""
    path = _cache_path(cache_dir, artifact)
    if path.exists():
        cached = json.loads(path.read_text())
        return Evaluation(
            cached["metrics"], np.array(cached["confusion"]), cached.get("baseline", {})
        )
    evaluation = load_evaluation(artifact.uri)
    cache_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "metrics": evaluation.metrics,
                "confusion": evaluation.confusion.tolist(),
                "baseline": evaluation.baseline,
            }
        )
    )
    return evaluation


def _plot_curves(history: dict[str, list[float]], path: Path) -> None:
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, metric in zip(axes, ("loss", "accuracy"), strict=True):
        for prefix, label in (("", "train"), ("val_", "eval")):
            values = history.get(prefix + metric, [])
            axis.plot(range(1, len(values) + 1), values, marker="o", label=label)
        axis.set_xlabel("epoch")
        axis.set_title(metric)
        axis.legend()
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _plot_confusion(confusion: np.ndarray, path: Path) -> None:
    figure, axis = plt.subplots(figsize=(5.5, 5))
    axis.imshow(confusion, cmap="Blues")
    axis.set_xticks(range(features.NUM_CLASSES), features.LABEL_NAMES, rotation=30)
    axis.set_yticks(range(features.NUM_CLASSES), features.LABEL_NAMES)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    for (row, column), count in np.ndenumerate(confusion):
        axis.text(
            column,
            row,
            f"{count:.0f}",
            ha="center",
            va="center",
            color="white" if count > confusion.max() / 2 else "black",
        )
    axis.set_title("Confusion matrix (eval split)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _fmt(value) -> str:
    return "–" if value is None else f"{value:.4f}"


def _accuracy_row(name: str, overall: dict[str, float] | None, note: str) -> list[str]:
    """[name, 'accuracy ± one standard error (n examples, note)'] of one model's overall metrics."""
    overall = overall or {}
    accuracy, count = overall.get(ACCURACY), overall.get("example_count", 0)
    if accuracy is None or not count:
        return [name, "–"]
    error = (accuracy * (1 - accuracy) / count) ** 0.5
    return [name, f"{accuracy:.4f} ± {error:.4f} ({count:.0f} examples, {note})"]


def _latest_outputs(store, pipeline_name: str) -> dict[str, object]:
    """The outputs of the newest run that evaluated a model, all from that one run."""
    run_id = metadata.latest_run_id(store, pipeline_name, with_node=node_ids.MODEL_NODES.evaluator)
    return run_outputs(store, pipeline_name, run_id)


def run_outputs(store, pipeline_name: str, run_id: int | None) -> dict[str, Any]:
    """The artifacts the report (and a model card) read, all from run `run_id`: None where the
    run made none."""
    wanted = {
        "examples": (node_ids.EXAMPLE_GEN, "Examples"),
        "model_run": (node_ids.MODEL_NODES.trainer, "ModelRun"),
        "evaluation": (node_ids.MODEL_NODES.evaluator, "ModelEvaluation"),
        "blessing": (node_ids.MODEL_NODES.evaluator, "ModelBlessing"),
        "holdout_evaluation": (
            node_ids.report_evaluator(features.HOLDOUT_SPLIT),
            "ModelEvaluation",
        ),
        "test_evaluation": (node_ids.report_evaluator(features.TEST_SPLIT), "ModelEvaluation"),
        "pushed": (node_ids.MODEL_NODES.pusher, "PushedModel"),
        "model": (node_ids.MODEL_NODES.trainer, "Model"),
        "statistics": (node_ids.STATISTICS_GEN, "ExampleStatistics"),
    }
    return {
        name: metadata.output_in_run(store, pipeline_name, run_id, node, type_name)
        for name, (node, type_name) in wanted.items()
    }


def overall_accuracy(run_dir: str, evaluation) -> float | None:
    """The overall accuracy of a ModelEvaluation artifact, as the report of `run_dir` read it."""
    cache_dir = Path(run_dir) / REPORT_DIR_NAME / EVALUATIONS_DIR_NAME
    return cached_evaluation(evaluation, cache_dir).metrics.get("", {}).get(ACCURACY)


def run_history(store, pipeline_name: str, cache_dir: Path) -> list[dict]:
    """One row per pipeline run, oldest first: the span it ingested, its accepted rows, the
    drift measured against the previous span, the holdout accuracy and what became of the model."""
    rows = []
    for run_id in metadata.run_ids(store, pipeline_name):
        output = functools.partial(metadata.output_in_run, store, pipeline_name, run_id)
        examples = output(node_ids.EXAMPLE_GEN, "Examples")
        if examples is None:
            continue
        holdout = output(node_ids.report_evaluator(features.HOLDOUT_SPLIT), "ModelEvaluation")
        accuracy = (
            cached_evaluation(holdout, cache_dir / EVALUATIONS_DIR_NAME)
            .metrics.get("", {})
            .get(ACCURACY)
            if holdout
            else None
        )
        rows.append(
            {
                "span": metadata.span(examples),
                "rows": read_summary(examples.uri).get(ACCEPTED, 0),
                "drift": cached_drift(store, pipeline_name, run_id, cache_dir / DRIFT_DIR_NAME),
                "holdout_accuracy": accuracy,
                "outcome": _outcome(store, pipeline_name, run_id),
            }
        )
    return rows


def _outcome(store, pipeline_name: str, run_id: int) -> str:
    """What became of the run's model: the version pushed, or why there is none."""

    def execution(node: str):
        return metadata.execution_in_run(store, pipeline_name, run_id, node)

    def ran(node: str) -> bool:
        return execution(node) is not None and not metadata.skipped(execution(node))

    def failed(node: str) -> bool:
        return execution(node) is not None and metadata.stopped_the_run(execution(node))

    for node, why in (
        (node_ids.EXAMPLE_GEN, "stopped: bad input rows"),
        (node_ids.ANOMALIES_GATE, "stopped: schema anomalies"),
        (node_ids.DRIFT_GATE, "stopped: drift"),
    ):
        if failed(node):
            return why
    pushed = metadata.output_in_run(
        store, pipeline_name, run_id, node_ids.MODEL_NODES.pusher, "PushedModel"
    )
    if pushed is not None and pushed.custom_properties[PUSHED_PROPERTY].int_value:
        return f"pushed version {pushed.custom_properties[PUSHED_VERSION_PROPERTY].string_value}"
    if not ran(node_ids.MODEL_NODES.trainer):
        return "nothing new" if ran(node_ids.SPAN_WINDOW) else "stopped before training"
    blessing = metadata.output_in_run(
        store, pipeline_name, run_id, node_ids.MODEL_NODES.evaluator, "ModelBlessing"
    )
    if blessing is None:
        return "stopped before the push gate"
    if not blessing.custom_properties[BLESSED_PROPERTY].int_value:
        return "not pushed: not blessed"
    return "not pushed: not servable"


def _plot_history(rows: list[dict], path: Path) -> None:
    spans = [row["span"] for row in rows if row["holdout_accuracy"] is not None]
    figure, axis = plt.subplots(figsize=(6, 3.5))
    axis.plot(
        range(len(spans)),
        [row["holdout_accuracy"] for row in rows if row["holdout_accuracy"] is not None],
        marker="o",
    )
    axis.set_xticks(range(len(spans)), [str(span) for span in spans])
    axis.set_xlabel("span ingested by the run")
    axis.set_ylabel("holdout accuracy")
    axis.set_title("Holdout accuracy, run by run")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write_report(
    run_dir: str, pipeline_name: str = "agnews", metadata_address: str | None = None
) -> tuple[Path, str]:
    """Writes `<run_dir>/report/` from the newest run in `metadata_address` (default:
    `<run_dir>/metadata.sqlite`); returns the report path and its headline table."""
    metadata_address = metadata_address or os.path.join(run_dir, "metadata.sqlite")
    if not metadata_connection.is_server(metadata_address) and not os.path.exists(metadata_address):
        raise FileNotFoundError(f"No ML Metadata at {metadata_address}: run `agnews run` first.")
    store = metadata.open_store(metadata_address)
    outputs = _latest_outputs(store, pipeline_name)
    if outputs["evaluation"] is None:
        raise FileNotFoundError(f"The runs recorded in {metadata_address} have no evaluation yet.")
    out_dir = Path(run_dir) / REPORT_DIR_NAME
    out_dir.mkdir(parents=True, exist_ok=True)

    evaluation, holdout, test = (
        cached_evaluation(outputs[name], out_dir / EVALUATIONS_DIR_NAME) if outputs[name] else None
        for name in ("evaluation", "holdout_evaluation", "test_evaluation")
    )
    history = read_history(outputs["model_run"].uri) if outputs["model_run"] else {}
    headline = _headline(outputs, evaluation, holdout, test, history)
    runs = run_history(store, pipeline_name, out_dir)
    _plot_history(runs, out_dir / ACCURACY_OVER_SPANS_PLOT)
    if history:
        _plot_curves(history, out_dir / CURVES_FILE_NAME)
    _plot_confusion(evaluation.confusion, out_dir / CONFUSION_FILE_NAME)
    sections = [
        "# agnews run report",
        headline,
        *_evaluation_sections(evaluation),
        *([f"## Training curves\n\n![training curves]({CURVES_FILE_NAME})"] if history else []),
        _profile_section(store, pipeline_name),
        "## Run by run (oldest first)",
        _runs_table(runs),
        f"![holdout accuracy over spans]({ACCURACY_OVER_SPANS_PLOT})",
        f"Sources: evaluation {outputs['evaluation'].uri}"
        + (f", Trainer run {outputs['model_run'].uri}" if outputs["model_run"] else ""),
    ]
    report_path = out_dir / REPORT_FILE_NAME
    report_path.write_text("\n\n".join(sections) + "\n")
    return report_path, headline


def _headline(outputs: dict, evaluation, holdout, test, history: dict) -> str:
    """The table the run prints: holdout (and baseline, test) and eval accuracy, epochs, rows,
    and whether the model was blessed and pushed."""
    rows = read_summary(outputs["examples"].uri) if outputs["examples"] else {}
    blessing, pushed = outputs["blessing"], outputs["pushed"]
    blessed = bool(blessing and blessing.custom_properties[BLESSED_PROPERTY].int_value)
    pushed_to = (
        pushed.custom_properties[PUSHED_DESTINATION_PROPERTY].string_value
        if pushed and pushed.custom_properties[PUSHED_PROPERTY].int_value
        else None
    )
    accuracies = [
        _accuracy_row(
            "holdout accuracy",
            holdout and holdout.metrics.get(""),
            "never seen in training or model selection: the figure to quote",
        )
    ]
    if holdout and holdout.baseline:
        accuracies.append(
            _accuracy_row(
                f"holdout accuracy of the {settings.BASELINE_MODEL} baseline",
                holdout.baseline,
                "the same examples",
            )
        )
    accuracies.append(
        _accuracy_row(
            "eval accuracy",
            evaluation.metrics.get(""),
            "steered early stopping: optimistic; gates the push",
        )
    )
    if test:
        accuracies.append(_accuracy_row("test accuracy", test.metrics.get(""), "the test files"))
    return _markdown_table(
        ["", "value"],
        [
            *accuracies,
            ["epochs trained", len(history.get("loss", [])) or "–"],
            [
                "input rows (accepted / rejected)",
                f"{rows.get(ACCEPTED, 0)} / {sum(rejected_counts(rows).values())}",
            ],
            ["blessed", "yes" if blessed else "NO"],
            ["pushed to", pushed_to or "not pushed"],
        ],
    )


def _evaluation_sections(evaluation) -> list[str]:
    """Per class, per slice and the confusion matrix of the eval split, headed."""
    per_class = _markdown_table(
        ["class", "precision", "recall", "F1"],
        [
            [
                name,
                *(
                    _fmt(evaluation.per_class.get(metric, {}).get(i))
                    for metric in ("precision", "recall", "f1_score")
                ),
            ]
            for i, name in enumerate(features.LABEL_NAMES)
        ],
    )
    slices = _markdown_table(
        ["slice", "examples", "accuracy"],
        [
            [name, f"{values.get('example_count', 0):.0f}", _fmt(values.get(ACCURACY))]
            for name, values in sorted(evaluation.metrics.items())
            if name
        ],
    )
    confusion = _markdown_table(
        ["true \\ predicted", *features.LABEL_NAMES],
        [
            [name, *(f"{v:.0f}" for v in evaluation.confusion[i])]
            for i, name in enumerate(features.LABEL_NAMES)
        ],
    )
    return [
        "## Per class (eval split)",
        per_class,
        "## Slices (eval split): by true class and by text length (short ≤ "
        f"{features.SHORT_MAX_TOKENS} tokens < medium ≤ {features.MEDIUM_MAX_TOKENS} < long)",
        slices,
        "## Confusion matrix (eval split)",
        confusion,
        f"![confusion matrix]({CONFUSION_FILE_NAME})",
    ]


def _profile_section(store, pipeline_name: str) -> str:
    """Each component's wall seconds (ML Metadata's execution times, on every orchestrator)
    and CPU seconds (where `agnews run` measured them) in the run the report is about, and the
    share of the run the model's training epochs took."""
    from pipeline import run_log

    run_id = metadata.latest_run_id(store, pipeline_name, with_node=node_ids.MODEL_NODES.evaluator)
    executions = metadata.executions_in_run(store, pipeline_name, run_id)
    started = min(e.create_time_since_epoch for e in executions.values())
    ended = max(e.last_update_time_since_epoch for e in executions.values())
    run_seconds = (ended - started) / 1000

    def cpu(execution) -> float | None:
        recorded = execution.custom_properties.get(CPU_SECONDS_PROPERTY)
        return recorded.double_value if recorded else None

    rows = [
        [
            node,
            metadata.outcome(e),
            f"{(e.last_update_time_since_epoch - e.create_time_since_epoch) / 1000:.1f}",
            "–" if cpu(e) is None else f"{cpu(e):.1f}",
        ]
        for node, e in executions.items()
    ]
    cpus = [cpu(e) for e in executions.values()]
    total_cpu = sum(c for c in cpus if c is not None)
    rows.append(
        [
            "**the run** (first start to last finish)",
            "",
            f"{run_seconds:.1f}",
            f"{total_cpu:.1f}" if None not in cpus else "–",
        ]
    )
    epochs = run_log.training_seconds(store, pipeline_name, run_id)
    training = (
        f"The model's training epochs ({len(epochs)}) took {sum(epochs):.1f} s, "
        f"{sum(epochs) / run_seconds:.0%} of the run."
        if epochs and run_seconds
        else "The model did not train in this run."
    )
    return "\n\n".join(
        [
            "## Profile of this run",
            "Wall seconds from ML Metadata's execution records; CPU seconds (this process and "
            "its child processes) as `agnews run` measured them, – where another orchestrator "
            "ran the component.",
            _markdown_table(["component", "outcome", "wall s", "CPU s"], rows),
            training,
        ]
    )


def _runs_table(runs: list[dict]) -> str:
    """One row per run: its span, rows, drift, holdout accuracy and what became of its model."""
    return _markdown_table(
        ["span", "rows", "drift (feature distance / threshold)", "holdout accuracy", "model"],
        [
            [
                row["span"],
                row["rows"],
                "; ".join(row["drift"]) or "–",
                _fmt(row["holdout_accuracy"]),
                row["outcome"],
            ]
            for row in runs
        ],
    )
