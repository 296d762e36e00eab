"""The scores CSV: one row per scored example, read from a PredictionLog of the `batch_scoring`
signature. `agnews score` writes it in shards; a pipeline run with `--score` turns BulkInferrer's
PredictionLogs into `report/scores.csv`, row for row the same."""

from __future__ import annotations

import csv
import functools
import io
import os

from components import artifacts, features
from components.artifacts import (
    BLESSED_PROPERTY,
    PUSHED_PROPERTY,
    PUSHED_VERSION_PROPERTY,
    REJECTED_FILE_NAME,
    read_summary,
    rejected_counts,
)
from pipeline import node_ids

PIPELINE_SCORES_FILE_NAME = "scores.csv"  # the pipeline's scores, in the report directory
# What `agnews score` writes in its output directory.
SCORES_PREFIX = "scores"  # scores-SSSSS-of-NNNNN.csv
PREDICTION_LOGS_PREFIX = "prediction_logs"  # prediction_logs-SSSSS-of-NNNNN.gz (--prediction-logs)
ROWS_FILE_NAME = artifacts.SUMMARY_FILE_NAME  # rows per outcome, as ExampleGen writes it
JOB_SUMMARY_FILE_NAME = "summary.json"  # written last: its presence means the job completed
SCORES_HEADER = [
    "source_file",
    "line_number",
    "label",
    *(f"p_{name}" for name in features.LABEL_NAMES),
    "model_version",
]


def score_fields(log, model_version: str) -> list:
    """One scores row from a PredictionLog of a scoring example: its source file and line, the
    predicted label, the probability of each class and the model version."""
    import tensorflow as tf

    from components import rows

    request = log.predict_log.request.inputs["examples"].string_val[0]
    source_file, line_number = rows.example_source(tf.train.Example.FromString(request))
    outputs = log.predict_log.response.outputs
    probabilities = tf.make_ndarray(outputs[features.PROBABILITIES_KEY]).reshape(-1)
    class_id = int(tf.make_ndarray(outputs[features.CLASS_ID_KEY]).reshape(-1)[0])
    return [
        source_file,
        line_number,
        features.LABEL_NAMES[class_id],
        *(f"{p:.9g}" for p in probabilities),
        model_version,
    ]


def score_line(log, model_version: str) -> str:
    """`score_fields` as one CSV line."""
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(score_fields(log, model_version))
    return out.getvalue()


def header() -> str:
    return ",".join(SCORES_HEADER)


def write_pipeline_scores(
    run_dir: str, pipeline_name: str, metadata_address: str
) -> tuple[str | None, str]:
    """The newest BulkInferrer result as `<run_dir>/report/scores.csv` (the same rows as
    `agnews score` writes); returns (its path, or None when there is nothing to convert; a
    sentence for the run summary)."""
    import tensorflow as tf

    from pipeline import metadata
    from pipeline.report import REPORT_DIR_NAME

    store = metadata.open_store(metadata_address)
    output = functools.partial(
        metadata.output_in_run, store, pipeline_name, metadata.latest_run_id(store, pipeline_name)
    )
    result = output(node_ids.BULK_INFERRER, "InferenceResult")
    blessing = output(node_ids.MODEL_NODES.evaluator, "ModelBlessing")
    pushed = output(node_ids.MODEL_NODES.pusher, "PushedModel")
    files = tf.io.gfile.glob(os.path.join(result.uri, "*")) if result else []
    path = os.path.join(run_dir, REPORT_DIR_NAME, PIPELINE_SCORES_FILE_NAME)
    if not files:
        if os.path.exists(path):
            os.remove(path)  # an earlier model's scores: not this run's
        return None, f"Scores: none ({_why_no_scores(blessing)})."
    version = (
        pushed.custom_properties[PUSHED_VERSION_PROPERTY].string_value
        if pushed and pushed.custom_properties[PUSHED_PROPERTY].int_value
        else ""
    )
    count = _write_scores_csv(files, path, version)
    examples = output(node_ids.SCORE_EXAMPLE_GEN, "Examples")
    rows = read_summary(examples.uri)
    rejected = sum(rejected_counts(rows).values())
    return path, (
        f"Scores: {path} ({count} rows, model version {version or 'not pushed'}"
        + (
            f"; {rejected} rows rejected, see {os.path.join(examples.uri, REJECTED_FILE_NAME)}"
            if rejected
            else ""
        )
        + ")."
    )


def _why_no_scores(blessing) -> str:
    """Why a run has no BulkInferrer predictions, from its Evaluator's blessing (None: the run
    trained no model)."""
    if blessing is None:
        return "no model was trained in this run (nothing new)"
    if not blessing.custom_properties[BLESSED_PROPERTY].int_value:
        return "the model was not blessed, and only a blessed model scores"
    return "BulkInferrer wrote no predictions"


def _write_scores_csv(files: list[str], path: str, version: str) -> int:
    """Writes the PredictionLogs of `files` (GZIP TFRecords) to the scores CSV at `path`: aside,
    then renamed into place; returns the number of rows."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    os.makedirs(os.path.dirname(path), exist_ok=True)
    count = 0
    with open(path + ".partial", "w", encoding="utf-8", newline="") as handle:
        handle.write(header() + "\n")
        for record in tf.data.TFRecordDataset(sorted(files), compression_type="GZIP"):
            handle.write(
                score_line(prediction_log_pb2.PredictionLog.FromString(record.numpy()), version)
                + "\n"
            )
            count += 1
    os.replace(path + ".partial", path)
    return count
