"""The drift gate on spans built from the embedded sample: TFX's StatisticsGen and
DistributionValidator executors, configured as the pipeline configures them, then DriftGate."""

import csv
import os
import shutil

import pytest
import tensorflow as tf
from tfx.components.distribution_validator.executor import Executor as DistributionValidatorExecutor
from tfx.components.statistics_gen.executor import Executor as StatisticsGenExecutor
from tfx.types import standard_artifacts
from tfx.utils import json_utils

from components import drift, features, rows
from pipeline.config import SCHEMA_DIR
from tests.helpers.data import sample_lines

SPORTS = features.LABEL_NAMES.index("Sports")


def _rows(first: int, count: int) -> list[tuple[int, str, str]]:
    """(label, title, description) of rows first .. first + count - 1 of the embedded sample."""
    lines = [line.decode() for line in sample_lines(first + count)[first:]]
    return [(int(label) - 1, title, description) for label, title, description in csv.reader(lines)]


SPAN_1, SPAN_2 = _rows(0, 1500), _rows(1500, 1500)  # two random halves of the same news


def _largest_share_change(before, now) -> float:
    """L-infinity distance of two spans' label distributions, counted here."""
    return max(
        abs(
            sum(row[0] == label for row in now) / len(now)
            - sum(row[0] == label for row in before) / len(before)
        )
        for label in range(features.NUM_CLASSES)
    )


def _write_span(directory, span_rows) -> None:
    directory.mkdir(parents=True)
    with tf.io.TFRecordWriter(str(directory / "data.tfrecord")) as writer:
        for label, title, description in span_rows:
            writer.write(rows.make_example(label, title, description).SerializeToString())


def _statistics(tmp_path, name: str, rows, schema: bool = True):
    """StatisticsGen's executor on a span's examples (one train split), with the pipeline's
    schema unless told otherwise."""
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / name / "examples")
    examples.split_names = f'["{features.TRAIN_SPLIT}"]'
    _write_span(tmp_path / name / "examples" / f"Split-{features.TRAIN_SPLIT}", rows)
    inputs = {"examples": [examples]}
    if schema:
        schema_artifact = standard_artifacts.Schema()
        schema_artifact.uri = str(tmp_path / name / "schema")
        os.makedirs(schema_artifact.uri)
        shutil.copy(SCHEMA_DIR / "schema.pbtxt", schema_artifact.uri)
        inputs["schema"] = [schema_artifact]
    statistics = standard_artifacts.ExampleStatistics()
    statistics.uri = str(tmp_path / name / "statistics")
    StatisticsGenExecutor().Do(inputs, {"statistics": [statistics]}, {})
    return statistics


def _gate(tmp_path, statistics, baseline, accept_drift: bool = False):
    """DistributionValidator's executor with the pipeline's settings, then DriftGate's function."""
    anomalies = standard_artifacts.ExampleAnomalies()
    anomalies.uri = str(tmp_path / f"anomalies_{statistics.uri.split('/')[-2]}")
    settings = drift.validator_settings(str(SCHEMA_DIR))
    DistributionValidatorExecutor().Do(
        {"statistics": [statistics], "baseline_statistics": [baseline] if baseline else []},
        {"anomalies": [anomalies]},
        {
            "distribution_validator_config": settings["config"],
            "include_split_pairs": json_utils.dumps(settings["include_split_pairs"]),
        },
    )
    drift.DriftGate.test_call(
        anomalies=anomalies,
        statistics=statistics,
        baseline_statistics=baseline,
        accept_drift=int(accept_drift),
        **drift.gate_settings(str(SCHEMA_DIR)),
    )
    return anomalies


@pytest.fixture(scope="module")
def span_1(tmp_path_factory):
    return _statistics(tmp_path_factory.mktemp("span_1"), "span_1", SPAN_1)


def test_spans_of_the_same_news_pass(span_1, tmp_path):
    span_2 = _statistics(tmp_path, "span_2", SPAN_2)
    anomalies = _gate(tmp_path, span_2, span_1)
    checks = drift.parse_checks(drift.gate_settings(str(SCHEMA_DIR))["thresholds"])
    lines = drift.describe_drift(anomalies.uri, span_2.uri, span_1.uri, checks)
    assert [(line.feature, line.measure, line.drifted) for line in lines] == [
        ("label", "infinity_norm", False),
        ("title", "mean_length_change", False),
        ("description", "mean_length_change", False),
    ]
    assert all(0 < line.distance < line.threshold / 2 for line in lines)


def test_a_span_of_almost_one_class_stops_the_run_naming_label(span_1, tmp_path):
    sports = [row for row in SPAN_2 if row[0] == SPORTS]
    rows = sports + SPAN_2[: len(sports) // 20]
    span_2 = _statistics(tmp_path, "span_2", rows)
    with pytest.raises(drift.DriftError) as raised:
        _gate(tmp_path, span_2, span_1)
    message = str(raised.value)
    assert "drifted from the previous span" in message and "before Transform" in message
    (line,) = [line for line in message.splitlines() if line.startswith("  ")]
    distance = _largest_share_change(SPAN_1, rows)  # counted here, TFDV's figure in the message
    assert line == f"  label: infinity_norm {distance:.3f} > threshold 0.12"
    report = message.split("full report: ")[1].splitlines()[0]
    assert report.endswith("SplitPair-train_train/SchemaDiff.pb") and os.path.exists(report)


def test_a_span_without_descriptions_stops_the_run_naming_description(span_1, tmp_path):
    span_2 = _statistics(tmp_path, "span_2", [(label, title, "") for label, title, _ in SPAN_2])
    with pytest.raises(drift.DriftError) as raised:
        _gate(tmp_path, span_2, span_1)
    (line,) = [line for line in str(raised.value).splitlines() if line.startswith("  ")]
    assert line.startswith(
        "  description: mean_length_change 1.000 > threshold 0.2 (mean 0.0 bytes, previous span"
    )


def test_accepted_drift_passes_and_says_so(span_1, tmp_path, caplog):
    sports = [row for row in SPAN_2 if row[0] == SPORTS]
    _gate(tmp_path, _statistics(tmp_path, "span_2", sports), span_1, accept_drift=True)
    (record,) = [r for r in caplog.records if "Drift gate" in r.getMessage()]
    assert (
        "drift from the previous span accepted (--accept-drift): label: infinity_norm"
        in record.getMessage()
    )


def test_the_first_span_passes_saying_there_is_no_previous_span(span_1, tmp_path, caplog):
    caplog.set_level("INFO", logger="absl")
    _gate(tmp_path, span_1, None)
    assert any(
        "no previous span to compare this span with" in r.getMessage() for r in caplog.records
    )


def test_a_numeric_label_is_refused_rather_than_measured_as_zero(span_1, tmp_path):
    # Without the schema TFDV reads the label as a number, and L-infinity reads 0.0 for any span.
    numeric = _statistics(tmp_path, "span_2", SPAN_2, schema=False)
    with pytest.raises(drift.DriftError, match="mark 'label' is_categorical in schemas/schema"):
        _gate(tmp_path, numeric, span_1)


def test_a_misspelt_threshold_file_is_refused_by_name(tmp_path):
    (tmp_path / drift.CONFIG_FILE_NAME).write_text("[label]\ninfinity_norn = 0.1\n")
    with pytest.raises(ValueError, match=f"{tmp_path}/drift.ini: unknown measure 'infinity_norn'"):
        drift.validator_settings(str(tmp_path))
