"""`agnews skew`: training/serving skew of the logged requests, with TFDV.

The requests `agnews serve --log-requests` sampled are grouped by the model version that answered
them; each group's TFDV statistics are compared with the training split's statistics of the run
that pushed that version (found in ML Metadata), feature by feature, with TFDV's own skew
measures: L-infinity distance and Jensen-Shannon divergence of the value distributions.
"""

from __future__ import annotations

import collections
import dataclasses
import os

import pandas as pd
import tensorflow as tf
import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import statistics_pb2

from agnews.serving.request_log import read_logs
from components import features
from components.artifacts import PUSHED_VERSION_PROPERTY
from pipeline import metadata, node_ids

MEASURES = ("L_INFTY", "JENSEN_SHANNON_DIVERGENCE")


@dataclasses.dataclass
class FeatureSkew:
    feature: str
    distances: dict[str, float]  # TFDV skew measure -> value
    train_avg_length: float
    served_avg_length: float


def training_statistics(
    metadata_address: str, version: int
) -> tuple[str, statistics_pb2.DatasetFeatureStatisticsList]:
    """(URI, train split statistics) of StatisticsGen in the run whose Pusher pushed `version`."""
    store = metadata.open_store(metadata_address)
    pushed = [
        a
        for a in store.get_artifacts_by_type("PushedModel")
        if a.custom_properties[PUSHED_VERSION_PROPERTY].string_value == str(version)
    ]
    if not pushed:
        raise LookupError(f"no run in {metadata_address} pushed version {version}")
    run = metadata.run_of_artifact(store, pushed[-1].id)
    for artifact in store.get_artifacts_by_context(run.id) if run else []:
        if (
            artifact.type == "ExampleStatistics"
            and metadata.producing_node(store, artifact.id) == node_ids.STATISTICS_GEN
        ):
            path = os.path.join(artifact.uri, f"Split-{features.TRAIN_SPLIT}", "FeatureStats.pb")
            return artifact.uri, tfdv.load_stats_binary(path)
    raise LookupError(
        f"the run that pushed version {version} has no StatisticsGen output in {metadata_address}"
    )


def logged_statistics(
    logs_dir: str,
) -> dict[tuple[str, int], tuple[int, statistics_pb2.DatasetFeatureStatisticsList]]:
    """(model name, version) -> (requests' rows, TFDV statistics of their text fields)."""
    columns: collections.defaultdict[tuple[str, int], dict[str, list[str]]] = (
        collections.defaultdict(lambda: {key: [] for key in features.TEXT_KEYS})
    )
    for log in read_logs(logs_dir):
        spec = log.predict_log.request.model_spec
        for key in features.TEXT_KEYS:
            values = tf.make_ndarray(log.predict_log.request.inputs[key])
            columns[(spec.name, spec.version.value)][key].extend(v.decode() for v in values)
    return {
        group: (
            len(text[features.TITLE_KEY]),
            tfdv.generate_statistics_from_dataframe(pd.DataFrame(text)),
        )
        for group, text in columns.items()
    }


def _avg_length(statistics, feature: str) -> float:
    for stats in statistics.datasets[0].features:
        if stats.path.step == [feature]:
            return stats.string_stats.avg_length
    return float("nan")


def compare(train, served) -> list[FeatureSkew]:
    """TFDV's skew measures per text feature (thresholds 0, so that every one is reported)."""
    schema = tfdv.infer_schema(train)
    for key in features.TEXT_KEYS:
        comparator = tfdv.get_feature(schema, key).skew_comparator
        comparator.infinity_norm.threshold = 0.0
        comparator.jensen_shannon_divergence.threshold = 0.0
    anomalies = tfdv.validate_statistics(train, schema, serving_statistics=served)
    measured = {
        tuple(info.path.step): {m.Type.Name(m.type): m.value for m in info.skew_measurements}
        for info in anomalies.drift_skew_info
    }
    return [
        FeatureSkew(
            key,
            {name: measured.get((key,), {}).get(name, float("nan")) for name in MEASURES},
            _avg_length(train, key),
            _avg_length(served, key),
        )
        for key in features.TEXT_KEYS
    ]
