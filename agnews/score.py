"""Batch scoring: `agnews score`, a Beam pipeline over files, writing the scores CSV
(pipeline.scores) from PredictionLogs of tfx_bsl's RunInference on the `batch_scoring` signature.

Rows are read by ingestion's own code (components.rows.ParseFiles, scoring mode), so a row
rejected here would be rejected by ExampleGen too, for the same reason. Every scoring example
carries its source file and line number; the model ignores them and `scores.score_line` repeats them
beside the prediction. RunInference loads the model once per worker process (Beam's shared
handle) and runs it on batches of examples; BulkInferrer runs the very same transform (with
Beam's adaptive batch sizes: its ModelSpec cannot set them).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import os
import tempfile
import zlib

import apache_beam as beam
import tensorflow as tf
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from tensorflow.python.saved_model import loader_impl
from tensorflow_serving.apis import prediction_log_pb2
from tfx_bsl.public.beam import run_inference
from tfx_bsl.public.proto import model_spec_pb2

from agnews import versions
from components import artifacts, features, rows, settings
from components.artifacts import ACCEPTED, REJECTED_FILE_NAME
from pipeline import beam_packaging, scores
from pipeline.scores import (
    JOB_SUMMARY_FILE_NAME,
    PREDICTION_LOGS_PREFIX,
    ROWS_FILE_NAME,
    SCORES_PREFIX,
)

# Rows per model call, fixed: a BiLSTM batch is padded to its longest row, and Beam's adaptive
# batching would size batches by its own overhead alone. 256, as bench/score.py's ceiling.
BATCH_SIZE = 256


class ScoreError(RuntimeError):
    """Scoring cannot start or finish as asked; the message says what to do."""


def inference_spec(version_dir: str):
    """tfx_bsl's in-process RunInference spec for a SavedModel's batch_scoring signature, on
    batches of BATCH_SIZE."""
    return model_spec_pb2.InferenceSpecType(
        saved_model_spec=model_spec_pb2.SavedModelSpec(
            model_path=version_dir, signature_name=[features.BATCH_SCORING]
        ),
        batch_parameters=model_spec_pb2.BatchParameters(
            min_batch_size=BATCH_SIZE, max_batch_size=BATCH_SIZE
        ),
    )


@dataclasses.dataclass
class ScoreSummary:
    model_dir: str
    model_version: str
    inputs: list[str]
    rows: dict[str, int]  # rows per outcome: accepted or a rejection reason
    scores: list[str]  # the CSV shards
    prediction_logs: list[str]  # the PredictionLog shards, with --prediction-logs
    rejected_rows_file: str
    model_loads: int  # RunInference's model loads over all workers

    @property
    def scored(self) -> int:
        return self.rows.get(ACCEPTED, 0)


def list_inputs(inputs: list[str]) -> list[str]:
    """The files INPUT arguments name: a file, a glob pattern, or a directory (its files, but
    not those named .* or _*, such as _SUCCESS markers)."""
    paths = []
    for given in inputs:
        pattern = (
            os.path.join(given, "*") if FileSystems.exists(given) and not _is_file(given) else given
        )
        matched = sorted(
            m.path
            for m in FileSystems.match([pattern])[0].metadata_list
            if _is_file(m.path)
            and not (pattern != given and os.path.basename(m.path).startswith((".", "_")))
        )
        if not matched:
            raise ScoreError(
                f"No input file at {given}: name CSV/CSV.gz or TFRecord files, a glob "
                "pattern or a directory of them."
            )
        paths += matched
    return sorted(set(paths))


def _is_file(path: str) -> bool:

    return not tf.io.gfile.isdir(path)


def _check_readable(paths: list[str]) -> None:
    """Reads each file's first row, so that an unreadable file stops the job before it starts
    and empty input is told apart from input whose every row was rejected."""
    empty = 0
    for path in paths:
        try:
            empty += next(rows.read_numbered_rows(path), None) is None
        except (OSError, EOFError, zlib.error, tf.errors.OpError) as error:
            detail = getattr(error, "message", None) or str(error) or type(error).__name__
            raise ScoreError(f"Cannot read {path}: {detail.splitlines()[0]}") from None
    if empty == len(paths):
        raise ScoreError(f"The input holds no rows: {', '.join(paths)}.")


def _common_dir(paths: list[str]) -> str:
    """The directory that rows' source_file names are relative to."""
    prefix = os.path.commonprefix([os.path.dirname(p) + "/" for p in paths])
    return prefix[: prefix.rfind("/")] if "/" in prefix else ""


def _prepare_output(output: str, overwrite: bool) -> None:
    """An empty `output`; with `overwrite`, one emptied of what an earlier job wrote (and only
    that: a directory with other files is refused all the same)."""
    ours = [
        f"{SCORES_PREFIX}-*",
        f"{PREDICTION_LOGS_PREFIX}-*",
        REJECTED_FILE_NAME,
        ROWS_FILE_NAME,
        JOB_SUMMARY_FILE_NAME,
        "beam-temp-*",
    ]
    names = (
        [n.rstrip("/") for n in tf.io.gfile.listdir(output)] if tf.io.gfile.isdir(output) else []
    )
    if names and not overwrite:
        raise ScoreError(
            f"{output} is not empty: name a new directory, or pass --overwrite to "
            "replace the scores there."
        )
    foreign = [n for n in names if not any(fnmatch.fnmatch(n, p) for p in ours)]
    if foreign:
        raise ScoreError(
            f"{output} holds files agnews score did not write ({foreign[0]}, ...): "
            "name a new directory."
        )
    for name in names:
        path = os.path.join(output, name)
        (tf.io.gfile.rmtree if tf.io.gfile.isdir(path) else tf.io.gfile.remove)(path)
    tf.io.gfile.makedirs(output)


def _check_signature(version_dir: str) -> None:
    signatures = {
        name
        for graph in loader_impl.parse_saved_model(version_dir).meta_graphs
        for name in graph.signature_def
    }
    if features.BATCH_SCORING not in signatures:
        raise ScoreError(
            f"The model at {version_dir} has no {features.BATCH_SCORING} signature (it "
            "was pushed before batch scoring existed): push a new one with `agnews run`."
        )


def _remove(paths: list[str]) -> None:
    for path in paths:
        tf.io.gfile.remove(path)


def score(
    inputs: list[str],
    model: str,
    output: str,
    beam_args: list[str] | None = None,
    prediction_logs: bool = False,
    max_bad_fraction: float | None = None,
    max_field_chars: int | None = None,
    overwrite: bool = False,
) -> ScoreSummary:
    """Scores every row of `inputs` with the newest SavedModel under `model` (or the version
    `model` names) into `output`: CSV shards, rejected.csv, optionally PredictionLog shards,
    and summary.json last. Raises ScoreError (or rows.IngestError for too many rejected
    rows, after which no scores are kept) with a message for the user."""
    try:
        version_dir = versions.resolve_version_dir(model)
    except FileNotFoundError as error:
        raise ScoreError(str(error)) from None
    _check_signature(version_dir)
    paths = list_inputs(inputs)
    _check_readable(paths)
    _prepare_output(output, overwrite)
    ingest_settings = rows.IngestSettings(
        max_bad_fraction=settings.DEFAULT_MAX_BAD_FRACTION
        if max_bad_fraction is None
        else max_bad_fraction,
        max_field_chars=max_field_chars or settings.DEFAULT_MAX_FIELD_CHARS,
        labelled=False,
    )
    summary = _run_job(paths, version_dir, output, ingest_settings, beam_args, prediction_logs)
    try:
        rows.check_bad_fraction(
            summary.rows, ingest_settings.max_bad_fraction, summary.rejected_rows_file
        )
    except rows.IngestError:
        _remove(summary.scores + summary.prediction_logs)
        raise
    with tf.io.gfile.GFile(os.path.join(output, JOB_SUMMARY_FILE_NAME), "w") as handle:
        handle.write(json.dumps(dataclasses.asdict(summary), indent=2, sort_keys=True))
    return summary


def _run_job(
    paths: list[str],
    version_dir: str,
    output: str,
    ingest_settings,
    beam_args: list[str] | None,
    prediction_logs: bool,
) -> ScoreSummary:
    """The Beam job: rows read by ingestion's rules, RunInference, the CSV (and PredictionLog)
    shards, rejected.csv and the row counts; returns what it wrote."""
    version = os.path.basename(version_dir.rstrip("/"))
    rejected_path = os.path.join(output, REJECTED_FILE_NAME)
    wheel_dir = os.path.join(tempfile.gettempdir(), "agnews-dist")
    pipeline = beam.Pipeline(
        options=PipelineOptions(beam_packaging.with_wheel(list(beam_args or []), wheel_dir))
    )
    parsed = pipeline | "Read" >> rows.ParseFiles(paths, ingest_settings, _common_dir(paths))
    logs = (
        parsed.examples
        | "Serialize" >> beam.Map(lambda example: example.SerializeToString())  # once, not twice
        | "Score" >> run_inference.RunInference(inference_spec(version_dir))
    )
    _ = (
        logs
        | "ToCsv" >> beam.Map(scores.score_line, version)
        | "WriteScores"
        >> beam.io.WriteToText(
            os.path.join(output, SCORES_PREFIX), file_name_suffix=".csv", header=scores.header()
        )
    )
    if prediction_logs:
        _ = logs | "WritePredictionLogs" >> beam.io.WriteToTFRecord(
            os.path.join(output, PREDICTION_LOGS_PREFIX),
            file_name_suffix=".gz",
            coder=beam.coders.ProtoCoder(prediction_log_pb2.PredictionLog),
        )
    _ = parsed.rejected | rows.WriteRejected(rejected_path)
    rows.write_summary([parsed.examples], parsed.rejected, os.path.join(output, ROWS_FILE_NAME))
    result = pipeline.run()
    result.wait_until_finish()

    loads = result.metrics().query(MetricsFilter().with_name("load_model_latency_milli_secs"))
    return ScoreSummary(
        model_dir=version_dir,
        model_version=version,
        inputs=paths,
        rows=artifacts.read_json(os.path.join(output, ROWS_FILE_NAME)),
        scores=sorted(tf.io.gfile.glob(os.path.join(output, f"{SCORES_PREFIX}-*.csv"))),
        prediction_logs=sorted(
            tf.io.gfile.glob(os.path.join(output, f"{PREDICTION_LOGS_PREFIX}-*.gz"))
        ),
        rejected_rows_file=rejected_path,
        model_loads=sum(m.committed.count for m in loads["distributions"] if m.committed),
    )
