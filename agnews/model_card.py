"""Model cards: one per pushed version, for a reviewer, written from the records the pipeline
keeps: ML Metadata (lineage, the gate's decision and thresholds, the registry's history), TFDV
(the training data's statistics) and TFMA (the evaluations).

Google's model-card-toolkit is archived and does not install beside TFX 1.16, so its sections
are rendered with jinja2 templates (agnews/templates/), in Markdown and HTML. Every figure is
read from its source; standard errors are binomial, sqrt(p (1 - p) / n), n being the examples
the figure was measured on (TFMA computes no confidence intervals here).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
from pathlib import Path

import jinja2

from agnews import registry
from agnews.serving.model_config import write_atomically
from components import features
from components.artifacts import (
    BLESSED_PROPERTY,
    PUSHED_DESTINATION_PROPERTY,
    read_history,
    read_summary,
)
from pipeline import metadata, report
from pipeline.node_ids import MODEL_NODES

CARDS_DIR_NAME = "model_cards"
CARD_FILE_NAME = "model_card"  # .md and .html
TEMPLATES_DIR = Path(__file__).parent / "templates"
INTENDED_USE = (
    "Sorting English news items (a headline and its description) into four topics: World, "
    "Sports, Business, Sci/Tech, as the AG News corpus defines them. Not for other languages, "
    "other kinds of text, or decisions about people; trained on AG News, whose licence allows "
    "non-commercial research use only."
)


class CardError(ValueError):
    """A card that cannot be written, said in one line."""


@dataclasses.dataclass(frozen=True)
class Figure:
    """A measured proportion with its binomial standard error over `examples`."""

    name: str
    value: float | None
    examples: int
    baseline: float | None = None  # the comparison's figure on the same examples, if any

    @property
    def stderr(self) -> float | None:
        if self.value is None or not self.examples:
            return None
        return math.sqrt(self.value * (1 - self.value) / self.examples)


def card_dir(serving_dir: str, version: int) -> str:
    """Where the card of `version` is written: beside the serving directory, not inside the
    version (which TF Serving loads)."""
    base = serving_dir.rstrip("/")
    return os.path.join(os.path.dirname(base), CARDS_DIR_NAME, os.path.basename(base), str(version))


def _run_of(book: registry.Registry, version: int, entry: registry.Entry) -> int:
    """The pipeline run whose model `version` is: a bless names it; a pipeline push is in it."""
    blessed = [c.run for c in entry.history if c.action == registry.BLESS and c.version == version]
    if blessed and blessed[0]:
        return blessed[0]
    push = book.push(version)
    run = metadata.run_of_artifact(book.store, push.id)
    if run is None:
        raise CardError(f"version {version}'s push is in no pipeline run of the store")
    return run.id


def _accuracy_thresholds(evaluator) -> dict:
    """The Evaluator's bars on accuracy, as its eval_config says them."""
    config = json.loads(evaluator.custom_properties["eval_config"].string_value)
    for spec in config.get("metrics_specs", []):
        for metric in spec.get("metrics", []):
            if metric.get("class_name") == "SparseCategoricalAccuracy":
                for per_slice in metric.get("per_slice_thresholds", []):
                    return per_slice.get("threshold", {})
    return {}


def _label_mix(statistics_uri: str) -> tuple[int, dict[str, float]]:
    """(examples, label share by class name) of the train split's TFDV statistics."""
    import tensorflow_data_validation as tfdv

    statistics = tfdv.load_stats_binary(
        os.path.join(statistics_uri, f"Split-{features.TRAIN_SPLIT}", "FeatureStats.pb")
    ).datasets[0]
    (label,) = [f for f in statistics.features if f.path.step == [features.LABEL_KEY]]
    counts = {int(v.value): v.frequency for v in label.string_stats.top_values}
    total = sum(counts.values()) or 1
    return int(statistics.num_examples), {
        name: counts.get(i, 0) / total for i, name in enumerate(features.LABEL_NAMES)
    }


def _accuracy(evaluation, slice_name: str = "") -> tuple[float | None, int]:
    """(accuracy, examples) of a slice ("" overall: the examples of its confusion matrix)."""
    values = evaluation.metrics.get(slice_name, {})
    examples = values.get("example_count", 0) if slice_name else evaluation.confusion.sum()
    return values.get(report.ACCURACY), int(examples)


def gather(
    metadata_address: str, pipeline_name: str, serving_dir: str, version: int, cache_dir: Path
) -> dict:
    """Everything the card shows, read from ML Metadata, TFDV and TFMA."""
    book = registry.model_registry(metadata_address, pipeline_name, serving_dir)
    book.sync()
    entry = {e.version: e for e in book.entries()}.get(version)
    if entry is None:
        raise CardError(f"version {version} is not registered: `agnews models list` shows them")
    run = _run_of(book, version, entry)
    store = book.store
    outputs = report.run_outputs(store, pipeline_name, run)
    if outputs["evaluation"] is None or outputs["model"] is None:
        raise CardError(f"run {run}, which made version {version}, has no evaluated model")
    evaluation = report.cached_evaluation(
        outputs["evaluation"], cache_dir / report.EVALUATIONS_DIR_NAME
    )
    holdout = (
        report.cached_evaluation(
            outputs["holdout_evaluation"], cache_dir / report.EVALUATIONS_DIR_NAME
        )
        if outputs["holdout_evaluation"]
        else None
    )
    execution = {
        node: metadata.execution_in_run(store, pipeline_name, run, node)
        for node in (MODEL_NODES.trainer, MODEL_NODES.evaluator)
    }
    window = sorted(
        store.get_artifacts_by_id(list(metadata.training_window(store, outputs["model"].id))),
        key=metadata.span,
    )
    train_rows, label_mix = (
        _label_mix(outputs["statistics"].uri) if outputs["statistics"] else (0, {})
    )
    eval_accuracy, eval_examples = _accuracy(evaluation)
    figures = [
        Figure(
            "eval accuracy (gates the push; baseline: the last pushed model)",
            eval_accuracy,
            eval_examples,
            evaluation.baseline.get(report.ACCURACY),
        )
    ]
    if holdout:
        accuracy, examples = _accuracy(holdout)
        figures.insert(
            0,
            Figure(
                "holdout accuracy (never seen in training or selection; baseline: the "
                "linear n-gram model)",
                accuracy,
                examples,
                holdout.baseline.get(report.ACCURACY),
            ),
        )
    recall, precision = evaluation.per_class["recall"], evaluation.per_class["precision"]
    per_class = [
        (
            Figure(name, recall[i], int(evaluation.confusion[i].sum())),
            Figure(name, precision[i], int(evaluation.confusion[:, i].sum())),
        )
        for i, name in enumerate(features.LABEL_NAMES)
    ]
    slices = [
        Figure(name, *_accuracy(evaluation, name)) for name in sorted(evaluation.metrics) if name
    ]
    push = book.push(version)
    blessing = outputs["blessing"]
    return {
        "model_name": book.model_name,
        "version": version,
        "path": push.custom_properties[PUSHED_DESTINATION_PROPERTY].string_value,
        "pushed_at": datetime.datetime.fromtimestamp(
            push.create_time_since_epoch / 1000, datetime.timezone.utc
        ).isoformat(timespec="seconds"),
        "run": run,
        "intended_use": INTENDED_USE,
        "spans": [
            {"span": metadata.span(a), "rows": read_summary(a.uri).get("accepted", 0)}
            for a in window
        ],
        "train_rows": train_rows,
        "label_mix": label_mix,
        "drift": report.cached_drift(store, pipeline_name, run, cache_dir / report.DRIFT_DIR_NAME),
        "training": json.loads(
            execution[MODEL_NODES.trainer].custom_properties["custom_config"].string_value
        )
        if execution[MODEL_NODES.trainer]
        else {},
        "epochs": len(read_history(outputs["model_run"].uri).get("loss", []))
        if outputs["model_run"]
        else 0,
        "figures": figures,
        "per_class": per_class,
        "slices": slices,
        "blessed": bool(blessing and blessing.custom_properties[BLESSED_PROPERTY].int_value),
        "thresholds": _accuracy_thresholds(execution[MODEL_NODES.evaluator])
        if execution[MODEL_NODES.evaluator]
        else {},
        "history": entry.history,
        "aliases": entry.aliases,
    }


def write_card(
    metadata_address: str,
    run_dir: str,
    pipeline_name: str,
    serving_dir: str,
    version: int,
    force: bool = False,
) -> str:
    """Writes the version's card (Markdown and HTML) unless it exists (or `force`); returns the
    Markdown file's path. TFMA's and TFDV's results are read through the report's cache in
    `run_dir`."""
    import tensorflow as tf

    directory = card_dir(serving_dir, version)
    path = os.path.join(directory, f"{CARD_FILE_NAME}.md")
    if tf.io.gfile.exists(path) and not force:
        return path
    cache_dir = Path(run_dir) / report.REPORT_DIR_NAME
    data = gather(metadata_address, pipeline_name, serving_dir, version, cache_dir)
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    environment.filters["num"] = lambda v, digits=4: "–" if v is None else f"{v:.{digits}f}"
    tf.io.gfile.makedirs(directory)
    for suffix in ("html", "md"):  # the .md last: its presence says the card is whole
        text = environment.get_template(f"{CARD_FILE_NAME}.{suffix}.j2").render(**data)
        write_atomically(os.path.join(directory, f"{CARD_FILE_NAME}.{suffix}"), text)
    return path
