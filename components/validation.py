"""A gate after ExampleValidator: data that breaks the schema contract stops the run here,
before Transform, with a message naming each feature and anomaly."""

import os

from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx.dsl.component.experimental.annotations import InputArtifact
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import io_utils

ANOMALIES_FILE_NAME = "SchemaDiff.pb"


class DataContractError(RuntimeError):
    """The examples do not meet schemas/schema.pbtxt."""


def describe_anomalies(anomalies_uri: str, split_names: list[str]) -> list[str]:
    """One readable line per anomalous feature and split, e.g.
    `train: feature 'label': Out-of-range values (...)`."""
    lines = []
    for split in split_names:
        path = os.path.join(anomalies_uri, f"Split-{split}", ANOMALIES_FILE_NAME)
        anomalies = anomalies_pb2.Anomalies.FromString(io_utils.read_bytes_file(path))
        for feature, info in sorted(anomalies.anomaly_info.items()):
            reasons = "; ".join(f"{r.short_description} ({r.description})" for r in info.reason)
            lines.append(f"{split}: feature '{feature}': {reasons or info.description}")
        if anomalies.HasField("dataset_anomaly_info"):
            reasons = "; ".join(r.description for r in anomalies.dataset_anomaly_info.reason)
            lines.append(f"{split}: dataset: {reasons}")
    return lines


@component
def AnomaliesGate(anomalies: InputArtifact[standard_artifacts.ExampleAnomalies]) -> None:
    """Raises DataContractError when ExampleValidator found any anomaly."""
    problems = describe_anomalies(
        anomalies.uri, artifact_utils.decode_split_names(anomalies.split_names)
    )
    if problems:
        raise DataContractError(
            "The examples break the data contract in schemas/schema.pbtxt, so the run stops "
            "before Transform:\n  "
            + "\n  ".join(problems)
            + f"\nExampleValidator's full report: {anomalies.uri}"
        )
