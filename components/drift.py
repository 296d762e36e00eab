"""The drift gate: TFX's DistributionValidator compares a span's statistics with the previous
span's, with the thresholds of schemas/drift.ini; DistributionValidator only records its verdict
(a `blessed` value per split pair), so DriftGate reads it and stops the run before Transform."""

import configparser
import dataclasses
import math
import os

import tensorflow_data_validation as tfdv
from absl import logging
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx.components.distribution_validator import executor as distribution_validator_executor
from tfx.components.statistics_gen import stats_artifact_utils
from tfx.dsl.component.experimental.annotations import InputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.proto import distribution_validator_pb2
from tfx.types import standard_artifacts
from tfx.utils import io_utils

from components import features

CONFIG_FILE_NAME = "drift.ini"
# Spans are compared on their train split: 80% of a span, the eval and holdout tenths are noisier.
SPLIT_PAIR = (features.TRAIN_SPLIT, features.TRAIN_SPLIT)
SPLIT_PAIR_NAME = "{}_{}".format(*SPLIT_PAIR)  # how DistributionValidator names the pair
MEAN_LENGTH_CHANGE = "mean_length_change"
# drift.ini's measures: (TFDV's name of the measurement it records, the anomaly it raises).
# The first three are TFDV's FeatureComparator fields, run by DistributionValidator. TFDV has no
# comparator for the length of a string: the gate measures that one from the two statistics.
# (A TFDV custom validation, which DistributionValidator can run, would do too, but TFX 1.16
# keeps that setting as a placeholder, which Airflow's operators fail to render.)
_MEASURES = {
    "infinity_norm": ("L_INFTY", "COMPARATOR_L_INFTY_HIGH"),
    "jensen_shannon_divergence": (
        "JENSEN_SHANNON_DIVERGENCE",
        "COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH",
    ),
    "normalized_abs_difference": (
        "NORMALIZED_ABSOLUTE_DIFFERENCE",
        "COMPARATOR_NORMALIZED_ABSOLUTE_DIFFERENCE_HIGH",
    ),
    MEAN_LENGTH_CHANGE: (None, None),
}
_BLESSED_KEY = distribution_validator_executor.ARTIFACT_PROPERTY_BLESSED_KEY


class DriftError(RuntimeError):
    """The span's data moved further from the previous span's than schemas/drift.ini allows,
    or its statistics cannot be compared as configured."""


@dataclasses.dataclass(frozen=True)
class Check:
    """One line of schemas/drift.ini: `measure` of `feature` may not exceed `threshold`."""

    feature: str
    measure: str
    threshold: float


@dataclasses.dataclass(frozen=True)
class Drift:
    """One check's outcome; `distance` is NaN where DistributionValidator could not measure."""

    feature: str
    measure: str
    distance: float
    threshold: float
    drifted: bool
    detail: str = ""

    def __str__(self) -> str:
        detail = f" ({self.detail})" if self.detail else ""
        if math.isnan(self.distance):
            return f"{self.feature}: {self.measure}{detail}"
        verdict = ">" if self.drifted else "<="
        return (
            f"{self.feature}: {self.measure} {self.distance:.3f} {verdict} threshold "
            f"{self.threshold:g}{detail}"
        )


def parse_checks(text: str) -> tuple[Check, ...]:
    """The checks of a drift.ini text; a ValueError names what is wrong."""
    parser = configparser.ConfigParser()
    parser.read_string(text)
    known = (features.LABEL_KEY, *features.TEXT_KEYS)
    checks = []
    for feature in parser.sections():
        if feature not in known:
            raise ValueError(f"unknown feature [{feature}] (features: {', '.join(known)})")
        for measure, value in parser.items(feature):
            if measure not in _MEASURES:
                raise ValueError(
                    f"unknown measure {measure!r} for {feature} (measures: {', '.join(_MEASURES)})"
                )
            checks.append(Check(feature, measure, float(value)))
    return tuple(checks)


def validator_config(checks) -> distribution_validator_pb2.DistributionValidatorConfig:
    """TFDV's comparators (L-infinity, Jensen-Shannon, ...) of the checks."""
    config = distribution_validator_pb2.DistributionValidatorConfig()
    for check in checks:
        if check.measure != MEAN_LENGTH_CHANGE:
            comparator = config.default_slice_config.feature.add()
            comparator.path.step.append(check.feature)
            getattr(comparator.distribution_comparator, check.measure).threshold = check.threshold
    return config


def _read_thresholds(schema_dir: str) -> str:
    """The text of drift.ini, refused by name when it does not parse."""
    path = os.path.join(schema_dir, CONFIG_FILE_NAME)
    text = io_utils.read_string_file(path)
    try:
        parse_checks(text)
    except (ValueError, configparser.Error) as error:
        raise ValueError(f"{path}: {error}") from None
    return text


def validator_settings(schema_dir: str) -> dict:
    """DistributionValidator's arguments other than its channels, from `schema_dir`/drift.ini."""
    checks = parse_checks(_read_thresholds(schema_dir))
    return {"config": validator_config(checks), "include_split_pairs": [SPLIT_PAIR]}


def gate_settings(schema_dir: str) -> dict:
    """DriftGate's `thresholds`: drift.ini's text, for its messages."""
    return {"thresholds": _read_thresholds(schema_dir)}


def _feature_statistics(statistics_uri: str, feature: str):
    stats = tfdv.load_stats_binary(
        os.path.join(
            statistics_uri, f"Split-{features.TRAIN_SPLIT}", stats_artifact_utils.BINARY_PB_BASENAME
        )
    )
    return tfdv.get_feature_stats(stats.datasets[0], tfdv.FeaturePath([feature]))


def report_path(anomalies_uri: str) -> str:
    """DistributionValidator's full report (an Anomalies proto) for the compared splits."""
    return os.path.join(
        anomalies_uri,
        f"SplitPair-{SPLIT_PAIR_NAME}",
        distribution_validator_executor.DEFAULT_FILE_NAME,
    )


def describe_drift(
    anomalies_uri: str, statistics_uri: str, baseline_uri: str, checks
) -> list[Drift]:
    """Each check's distance and verdict, then any other anomaly DistributionValidator recorded
    (e.g. a feature it could not compare). TFDV records the comparators' distances and verdicts;
    the mean length change is measured here from the two statistics."""
    anomalies = anomalies_pb2.Anomalies.FromString(
        io_utils.read_bytes_file(report_path(anomalies_uri))
    )
    measured = {
        (".".join(info.path.step), measurement.type): measurement.value
        for info in anomalies.drift_skew_info
        for measurement in info.drift_measurements
    }
    raised = {
        (feature, anomalies_pb2.AnomalyInfo.Type.Name(reason.type))
        for feature, info in anomalies.anomaly_info.items()
        for reason in info.reason
    }
    measurement_types = anomalies_pb2.DriftSkewInfo.Measurement.Type
    drifts = []
    for check in checks:
        measurement, anomaly = _MEASURES[check.measure]
        detail = ""
        if measurement is None:
            now, before = (
                _feature_statistics(uri, check.feature).string_stats.avg_length
                for uri in (statistics_uri, baseline_uri)
            )
            distance = abs(now - before) / before if before else (0.0 if now == 0 else math.inf)
            detail = f"mean {now:.1f} bytes, previous span {before:.1f}"
            drifted = distance > check.threshold
        else:
            distance = measured.get((check.feature, measurement_types.Value(measurement)), math.nan)
            drifted = (check.feature, anomaly) in raised
        drifts.append(
            Drift(check.feature, check.measure, distance, check.threshold, drifted, detail)
        )
    checked = {(check.feature, _MEASURES[check.measure][1]) for check in checks}
    for feature, info in sorted(anomalies.anomaly_info.items()):
        for reason in info.reason:
            if (feature, anomalies_pb2.AnomalyInfo.Type.Name(reason.type)) not in checked:
                drifts.append(
                    Drift(
                        feature,
                        reason.short_description,
                        math.nan,
                        math.nan,
                        True,
                        reason.description,
                    )
                )
    return drifts


def _check_categorical(statistics_uri: str, checks) -> None:
    """L-infinity compares category shares: on numeric statistics TFDV reports 0.0 whatever the
    span, a gate that never closes."""
    for check in checks:
        if check.measure == "infinity_norm" and _feature_statistics(
            statistics_uri, check.feature
        ).HasField("num_stats"):
            raise DriftError(
                f"The drift check of '{check.feature}' (infinity_norm) needs categorical "
                f"statistics: mark '{check.feature}' is_categorical in schemas/schema.pbtxt and "
                "give StatisticsGen that schema."
            )


@component
def DriftGate(
    anomalies: InputArtifact[standard_artifacts.ExampleAnomalies],
    statistics: InputArtifact[standard_artifacts.ExampleStatistics],
    baseline_statistics: InputArtifact[standard_artifacts.ExampleStatistics] = None,
    thresholds: Parameter[str] = "",
    accept_drift: Parameter[int] = 0,
) -> None:
    """Raises DriftError when DistributionValidator found drift or a length moved past its
    threshold, unless `accept_drift`: then it logs that the drift was accepted. `thresholds`:
    drift.ini's text (gate_settings)."""
    checks = parse_checks(thresholds)
    _check_categorical(statistics.uri, checks)
    blessed = anomalies.get_json_value_custom_property(_BLESSED_KEY) or {}
    if baseline_statistics is None or SPLIT_PAIR_NAME not in blessed:
        logging.info("Drift gate: no previous span to compare this span with; it passes.")
        return
    drifts = describe_drift(anomalies.uri, statistics.uri, baseline_statistics.uri, checks)
    drifted = [str(drift) for drift in drifts if drift.drifted]
    if not drifted and blessed[SPLIT_PAIR_NAME] == distribution_validator_executor.BLESSED_VALUE:
        logging.info(
            "Drift gate: no drift from the previous span (%s).", "; ".join(map(str, drifts))
        )
        return
    if accept_drift:
        logging.warning(
            "Drift gate: drift from the previous span accepted (--accept-drift): %s.",
            "; ".join(drifted),
        )
        return
    raise DriftError(
        f"This span drifted from the previous span beyond schemas/{CONFIG_FILE_NAME}, so the run "
        "stops before Transform:\n  "
        + "\n  ".join(drifted)
        + f"\nDistributionValidator's full report: {report_path(anomalies.uri)}"
        "\nTo train on this span anyway: agnews run --accept-drift"
    )
