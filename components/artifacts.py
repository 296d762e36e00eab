"""Files our components write into their TFX artifacts, and how to read them back.

Plain Python (TensorFlow's file API only when a file is read), so the run summary and the
report read them without importing TFX or Beam.
"""
import json
import os

# In ExampleGen's Examples artifact.
REJECTED_FILE_NAME = "rejected.csv"
SUMMARY_FILE_NAME = "ingest_summary.json"
ACCEPTED = "accepted"
# In the Trainer's ModelRun artifact: per-epoch Keras metrics.
HISTORY_FILE_NAME = "history.json"


def read_json(path: str):
    """A JSON file on any file system TensorFlow reads (local, gs://, ...)."""
    import tensorflow as tf

    with tf.io.gfile.GFile(path) as handle:
        return json.load(handle)


def read_history(model_run_uri: str) -> dict[str, list[float]]:
    """The Trainer's per-epoch Keras metrics, or {} when its run wrote none."""
    import tensorflow as tf

    path = os.path.join(model_run_uri, HISTORY_FILE_NAME)
    return read_json(path) if tf.io.gfile.exists(path) else {}


def read_summary(examples_uri: str) -> dict[str, int]:
    """Rows per outcome (`accepted` or a rejection reason) of one ExampleGen run."""
    return read_json(os.path.join(examples_uri, SUMMARY_FILE_NAME))
