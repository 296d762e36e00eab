"""Test data: rows of the embedded sample, the real ingestion executor, and the artifacts of the
session's pipeline runs (tests/conftest.py)."""

import gzip
from pathlib import Path

from pipeline.config import SAMPLE_DATA_DIR

# Passes ingestion (it has text) but has no token: Transform must give it one OOV token.
PUNCTUATION_ONLY_ROW = b'"1","...","--"'


def sample_lines(count: int) -> list[bytes]:
    """The first `count` lines of the embedded AG News sample."""
    with gzip.open(SAMPLE_DATA_DIR / "train.csv.gz", "rb") as handle:
        return handle.read().splitlines()[:count]


def run_example_gen(examples_dir: Path, settings, input_base: str, patterns: dict[str, str]):
    """Runs the real ingestion executor (Beam) as ExampleGen would; returns (artifact,
    IngestError or None)."""
    from tfx.proto import example_gen_pb2
    from tfx.types import standard_artifacts
    from tfx.utils import proto_utils

    from components import ingest, rows

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
        "custom_config": proto_utils.proto_to_json(ingest.custom_config(settings)),
        "output_file_format": example_gen_pb2.FORMAT_TFRECORDS_GZIP,
    }
    try:
        ingest.Executor().Do({}, {"examples": [examples]}, exec_properties)
    except rows.IngestError as error:
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
