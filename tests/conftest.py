"""Shared fixtures. Importing `components` first selects Keras 2 before TensorFlow loads."""

import gzip
from pathlib import Path

import pytest

import components  # noqa: F401
from agnews import cli
from pipeline.config import SAMPLE_DATA_DIR

# Passes ingestion (it has text) but has no token: Transform must give it one OOV token.
PUNCTUATION_ONLY_ROW = b'"1","...","--"'


def sample_lines(count: int) -> list[bytes]:
    """The first `count` lines of the embedded AG News sample."""
    with gzip.open(SAMPLE_DATA_DIR / "train.csv.gz", "rb") as handle:
        return handle.read().splitlines()[:count]


def run_example_gen(examples_dir: Path, settings, input_base: str, patterns: dict[str, str]):
    """Runs the real ingestion executor (Beam) as ExampleGen would; returns (artifact, IngestError or None)."""
    from tfx.proto import example_gen_pb2
    from tfx.types import standard_artifacts
    from tfx.utils import proto_utils

    from components import ingest

    examples = standard_artifacts.Examples()
    examples.uri = str(examples_dir)
    input_config = example_gen_pb2.Input(
        splits=[
            example_gen_pb2.Input.Split(name=name, pattern=pattern)
            for name, pattern in patterns.items()
        ]
    )
    output_config = example_gen_pb2.Output(
        split_config=example_gen_pb2.SplitConfig(
            splits=[
                example_gen_pb2.SplitConfig.Split(name=name, hash_buckets=buckets)
                for name, buckets in (("train", 8), ("eval", 1), ("holdout", 1))
            ]
        )
    )
    exec_properties = {
        "input_base": input_base,
        "input_config": proto_utils.proto_to_json(input_config),
        "output_config": proto_utils.proto_to_json(output_config),
        "custom_config": proto_utils.proto_to_json(settings.to_custom_config()),
        "output_file_format": example_gen_pb2.FORMAT_TFRECORDS_GZIP,
    }
    try:
        ingest.Executor().Do({}, {"examples": [examples]}, exec_properties)
    except ingest.IngestError as error:
        return examples, error
    return examples, None


def read_examples(examples, split: str) -> list:
    """The tf.Examples of one split of an Examples artifact."""
    import tensorflow as tf

    files = tf.io.gfile.glob(f"{examples.uri}/Split-{split}/*")
    return [
        tf.train.Example.FromString(record.numpy())
        for record in tf.data.TFRecordDataset(files, compression_type="GZIP")
    ]


def transform_outputs(root):
    """(transformed examples artifact, transform graph dir) of a pipeline run under `root`."""
    from tfx.types import standard_artifacts

    examples = standard_artifacts.Examples()
    examples.uri = newest_output(root, "Transform", "transformed_examples")
    examples.split_names = '["train", "eval"]'  # what Transform transforms
    return examples, newest_output(root, "Transform", "transform_graph")


def newest_output(root, component: str, output: str) -> str:
    """The newest artifact directory of `component`'s `output` in the pipeline run under `root`
    (a later test reruns the pipeline with --no-cache, which adds one)."""
    import glob

    return max(
        glob.glob(str(root / "pipeline" / component / output / "*")),
        key=lambda path: int(path.rsplit("/", 1)[1]),
    )


# Rows the first run scores with BulkInferrer (--score): sample rows the training data does not
# hold, unlabelled, below a line of column names.
SCORE_ROWS = 40


def score_lines() -> list[bytes]:
    """`title,description` lines of sample rows 301-340 (the e2e run trains on rows 1-300)."""
    import csv
    import io

    out = io.StringIO()
    csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows(
        row[1:]
        for row in csv.reader(line.decode() for line in sample_lines(300 + SCORE_ROWS)[300:])
    )
    return out.getvalue().encode().splitlines()


@pytest.fixture(scope="session")
def first_run(tmp_path_factory):
    """One real pipeline run (LocalDagRunner, 1 epoch) on 300 sample rows plus a token-less row,
    scoring SCORE_ROWS more with BulkInferrer and pushing the linear baseline too (to
    `root/agnews_linear`, beside `root/serving`); returns its directory and the `agnews`
    arguments used."""
    root = tmp_path_factory.mktemp("e2e")
    (root / "score").mkdir()
    (root / "score" / "unlabelled.csv").write_bytes(
        b"\n".join([b"title,description", *score_lines()]) + b"\n"
    )
    return _pipeline_run(root, "--score", str(root / "score"), "--push-baseline")


@pytest.fixture(scope="session")
def wide_run(tmp_path_factory):
    """The same run with the BiLSTM + linear n-gram model (Transform adds the n-gram features),
    without the baseline."""
    return _pipeline_run(
        tmp_path_factory.mktemp("e2e_wide"), "--model", "bilstm2_wide", "--no-baseline"
    )


def _pipeline_run(root, *extra_args: str):
    data = root / "data"
    data.mkdir()
    (data / "train.csv").write_bytes(b"\n".join(sample_lines(300) + [PUNCTUATION_ONLY_ROW]) + b"\n")
    args = [
        "run",
        "--data",
        str(data),
        "--pipeline-root",
        str(root / "pipeline"),
        "--metadata-path",
        str(root / "metadata.sqlite"),
        "--serving-dir",
        str(root / "serving"),
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--min-accuracy",
        "0",
        *extra_args,
    ]
    assert cli.main(args) == 0
    return root, args


# Runs `agnews ARGS` in a fresh interpreter and reports which heavy stacks it imported.
_CLI_PROBE = r"""
import json, sys
from agnews import cli
try:
    code = cli.main(sys.argv[1:])
except SystemExit as stop:
    code = stop.code
heavy = ("tensorflow", "tfx", "tensorflow_transform", "tensorflow_model_analysis", "apache_beam",
         "google.cloud.aiplatform", "matplotlib")
sys.stdout.flush()
print(json.dumps({"exit": code, "loaded": sorted(m for m in heavy if m in sys.modules)}))
"""


def agnews_subprocess(*args: str):
    """(exit code, heavy modules imported, stdout without the probe line, stderr) of `agnews ARGS`."""
    import json
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _CLI_PROBE, *args], capture_output=True, text=True, timeout=600
    )
    *output, probe = done.stdout.rstrip("\n").splitlines()
    result = json.loads(probe)
    return result["exit"], set(result["loaded"]), "\n".join(output), done.stderr
