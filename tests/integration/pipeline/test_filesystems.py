"""Our components read and write artifacts on any file system TensorFlow and Beam know, not
only on local disk: on TF's in-memory `ram://` (where only TensorFlow can reach the files), and
on `gs://` against a local GCS emulator (run by `bash .ci/gcs-emulator`, which CI does)."""

import os
import subprocess
import sys
import uuid

import pytest
import tensorflow as tf
from tensorflow_metadata.proto.v0 import anomalies_pb2

from agnews import predict, versions
from agnews.exit_codes import ExitCode
from components import artifacts, features, rows, servability, validation
from pipeline import local_runner, metadata_connection
from tests.helpers.data import sample_lines

# Set by the emulator's script; the gcs tests run only under it (make test-gcs, -m gcs).
BUCKET = os.environ.get("AGNEWS_TEST_BUCKET")


def _unique(base: str) -> str:
    """A fresh directory under base; under gs://, the bucket the emulator serves."""
    if base is None:
        pytest.fail(
            "the gcs tests need the GCS emulator: make test-gcs "
            "(bash .ci/gcs-emulator .venv/bin/pytest -m gcs ...)"
        )
    return f"{base}/{uuid.uuid4().hex[:8]}"


class _Servable(tf.Module):
    """A stand-in model with both serving signatures. `correct` answers as the check expects;
    otherwise its probabilities sum to 4."""

    def __init__(self, correct: bool):
        super().__init__()
        self.correct = correct

    def _answer(self, title):
        rows = tf.shape(title)[0]
        if self.correct:  # one class per title length, 0.7 against 0.1 for the others
            class_id = tf.strings.length(title, unit="UTF8_CHAR") % features.NUM_CLASSES
            probabilities = tf.one_hot(class_id, features.NUM_CLASSES, 0.7, 0.1)
        else:
            class_id = tf.zeros([rows], tf.int32)
            probabilities = tf.ones([rows, features.NUM_CLASSES])
        return {
            features.PROBABILITIES_KEY: probabilities,
            features.CLASS_ID_KEY: tf.cast(class_id, tf.int64),
            features.LABEL_NAME_KEY: tf.gather(tf.constant(features.LABEL_NAMES), class_id),
        }

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.string, name=features.TITLE_KEY),
            tf.TensorSpec([None], tf.string, name=features.DESCRIPTION_KEY),
        ]
    )
    def serve_text(self, title, description):
        return self._answer(title)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_tf_examples(self, examples):
        parsed = tf.io.parse_example(
            examples, {key: tf.io.FixedLenFeature([], tf.string) for key in features.TEXT_KEYS}
        )
        return self._answer(parsed[features.TITLE_KEY])

    def save(self, export_dir: str) -> None:
        tf.saved_model.save(
            self,
            export_dir,
            signatures={
                features.SERVING_DEFAULT: self.serve_text,
                features.SERVING_TF_EXAMPLE: self.serve_tf_examples,
            },
        )


def _write_eval_examples(examples_uri: str, count: int = 8) -> None:
    """An Examples artifact's eval split, as our ExampleGen writes it (gzipped TFRecords)."""
    path = os.path.join(examples_uri, "Split-eval", "data_tfrecord-00000-of-00001.gz")
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for i in range(count):
            writer.write(
                rows.make_example(
                    i % features.NUM_CLASSES, f"title {'x' * i}", f"description {i}"
                ).SerializeToString()
            )


def _stage_candidate(root: str, correct: bool) -> str:
    """A stand-in model staged by the gate's own code, with the warmup file, under `root`."""
    _Servable(correct).save(os.path.join(root, "model", "Format-Serving"))
    _write_eval_examples(os.path.join(root, "examples"))
    return servability.stage_candidate(
        os.path.join(root, "model"), os.path.join(root, "examples"), os.path.join(root, "blessing")
    )


# --- ram://: files that only TensorFlow's file API can see ------------------------------------


def _write_anomalies(anomalies_uri: str, split: str, anomalies: anomalies_pb2.Anomalies) -> None:
    path = os.path.join(anomalies_uri, f"Split-{split}", validation.ANOMALIES_FILE_NAME)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, "wb") as handle:
        handle.write(anomalies.SerializeToString())


def test_the_anomalies_gate_reads_anomalies_through_tensorflow():
    uri = _unique("ram://anomalies")
    broken = anomalies_pb2.Anomalies()
    broken.anomaly_info["label"].reason.add(
        short_description="Out-of-range values", description="Unexpectedly large value: 7."
    )
    _write_anomalies(uri, "train", broken)
    _write_anomalies(uri, "eval", anomalies_pb2.Anomalies())
    assert validation.describe_anomalies(uri, ["train", "eval"]) == [
        "train: feature 'label': Out-of-range values (Unexpectedly large value: 7.)"
    ]


def test_the_report_reads_the_training_history_through_tensorflow():
    run = _unique("ram://model_run")
    with tf.io.gfile.GFile(os.path.join(run, artifacts.HISTORY_FILE_NAME), "w") as handle:
        handle.write('{"loss": [0.9, 0.5], "val_loss": [0.8, 0.6]}')
    assert artifacts.read_history(run) == {"loss": [0.9, 0.5], "val_loss": [0.8, 0.6]}
    assert artifacts.read_history(_unique("ram://model_run")) == {}


def test_the_servability_gate_stages_a_candidate_on_a_tensorflow_file_system():
    # The check process cannot see this process's ram://: here, the copy and the warmup file,
    # loaded and replayed in this process as TF Serving would; the gs:// test runs the check.
    candidate = _stage_candidate(_unique("ram://servability"), correct=True)
    replayed = versions.warmup_requests(candidate)
    assert len(replayed) == len(servability.WARMUP_SIGNATURES) * len(servability.WARMUP_BATCH_SIZES)
    model = versions.load_warm(candidate)
    answer = model.signatures[features.SERVING_DEFAULT](**replayed[0][1])
    assert answer[features.PROBABILITIES_KEY].shape == (1, features.NUM_CLASSES)


def test_the_check_process_resolves_a_relative_candidate_as_this_process_does(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    candidate = os.path.relpath(_stage_candidate(str(tmp_path / "root"), correct=False))
    problems = servability.check_in_separate_process(candidate, timeout_seconds=300)
    assert problems and all("probabilities sum to 4.0000" in p for p in problems)


# --- gs://: a whole component run against a local GCS emulator --------------------------------


@pytest.mark.gcs
def test_a_whole_agnews_run_on_gcs_pushes_a_model_that_answers(tmp_path):
    """`agnews run` as a user starts it, with the data, the pipeline root and the serving
    directory on gs:// (ML Metadata and the report stay local): ingestion with a bad row,
    statistics and the data contract, both Transforms and Trainers, the Evaluators, the
    servability gate and Pusher all read and write the bucket."""
    root = _unique(BUCKET)
    with tf.io.gfile.GFile(f"{root}/data/train.csv", "wb") as handle:
        handle.write(b"\n".join(sample_lines(300) + [b'"9","bad label","x"']) + b"\n")
    metadata_path = tmp_path / "metadata.sqlite"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "agnews.cli",
            "run",
            "--data",
            f"{root}/data",
            "--pipeline-root",
            f"{root}/pipeline",
            "--serving-dir",
            f"{root}/serving",
            "--metadata-path",
            str(metadata_path),
            "--epochs",
            "1",
            "--batch-size",
            "32",
            "--min-accuracy",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == ExitCode.OK, done.stdout[-2000:] + done.stderr[-3000:]
    assert f"Model pushed to: {root}/serving/" in done.stdout

    summary = local_runner.summarize(str(metadata_path), "agnews")
    assert summary.rows == {"accepted": 300, rows.LABEL_NOT_1_TO_4: 1}
    assert summary.rejected_rows_file.startswith(f"{root}/pipeline/")
    with tf.io.gfile.GFile(summary.rejected_rows_file) as handle:
        assert handle.read().splitlines()[1].startswith(f"train.csv,301,{rows.LABEL_NOT_1_TO_4},")
    version = versions.resolve_version_dir(f"{root}/serving")
    assert summary.pushed_to.rstrip("/") == version
    assert len(versions.warmup_requests(version)) == (
        len(servability.WARMUP_SIGNATURES) * len(servability.WARMUP_BATCH_SIZES)
    )
    (answer,) = predict.predict(version, ["Stocks slide as oil prices climb"], [""])
    assert answer["label"] in features.LABEL_NAMES
    assert (tmp_path / "report" / "training_curves.png").is_file()  # the history, read from gs://


@pytest.mark.gcs
def test_example_validator_anomalies_stop_the_run_on_gcs(tmp_path):
    from tfx.components import ExampleValidator, ImportExampleGen, StatisticsGen
    from tfx.components.schema_gen.import_schema_gen.component import ImportSchemaGen
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner
    from tfx.orchestration.pipeline import Pipeline

    from pipeline.config import PipelineConfig

    root = _unique(BUCKET)
    with tf.io.TFRecordWriter(f"{root}/data/data.tfrecord") as writer:
        for number, label in enumerate([0, 1, 2, 3, 7] * 4):
            writer.write(rows.make_example(label, f"headline {number}", "text").SerializeToString())
    example_gen = ImportExampleGen(input_base=f"{root}/data")
    schema_gen = ImportSchemaGen(
        schema_file=os.path.join(PipelineConfig().schema_dir, "schema.pbtxt")
    )
    statistics_gen = StatisticsGen(examples=example_gen.outputs["examples"])
    example_validator = ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"]
    )
    gate = validation.AnomaliesGate(anomalies=example_validator.outputs["anomalies"])
    with pytest.raises(validation.DataContractError) as raised:
        LocalDagRunner().run(
            Pipeline(
                pipeline_name="contract",
                pipeline_root=f"{root}/pipeline",
                components=[example_gen, schema_gen, statistics_gen, example_validator, gate],
                metadata_connection_config=metadata_connection.connection_config(
                    str(tmp_path / "m.sqlite")
                ),
            )
        )
    assert "feature 'label'" in str(raised.value) and "Out-of-range values" in str(raised.value)
    assert f"{root}/pipeline/ExampleValidator/anomalies/" in str(raised.value)


@pytest.mark.gcs
def test_the_check_process_loads_a_broken_candidate_from_gcs_and_says_why():
    candidate = _stage_candidate(_unique(BUCKET), correct=False)
    problems = servability.check_in_separate_process(candidate, timeout_seconds=300)
    assert len(problems) == len(servability.WARMUP_BATCH_SIZES) * len(servability.WARMUP_SIGNATURES)
    assert "serving_default (batch of 1): probabilities sum to 4.0000" in problems[0]
