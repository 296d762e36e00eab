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
# Not a rejection: a blank CSV line is counted in the summary under this key, and neither
# written to rejected.csv nor counted toward --max-bad-fraction.
BLANK_LINE = "blank_line"
# In the Trainer's ModelRun artifact: per-epoch Keras metrics, and each epoch's wall seconds
# (training and validation) under EPOCH_SECONDS_KEY.
HISTORY_FILE_NAME = "history.json"
EPOCH_SECONDS_KEY = "epoch_seconds"
WARM_START_FILE_NAME = "warm_start.json"  # what the model started from (components.warm_start)
# Keras's BackupAndRestore state while the Trainer trains (deleted when training ends): a
# restarted Trainer execution (same artifacts: a retried Kubeflow task, a rescheduled Vertex AI
# replica) resumes from the last finished epoch.
TRAINING_BACKUP_DIR_NAME = "training_backup"
# In an InfraBlessing: the blessed model, warmup requests included, that Pusher pushes (TFX's
# path_utils.stamped_model_path, named here for readers that import no TFX).
STAMPED_MODEL_DIR = "stamped_model"

# Custom properties of TFX's own artifacts, as TFX's Evaluator and Pusher (and our gates, which
# follow them) set them.
BLESSED_PROPERTY = "blessed"  # ModelBlessing / InfraBlessing: 1 when blessed
PUSHED_PROPERTY = "pushed"  # PushedModel: 1 when it pushed
PUSHED_VERSION_PROPERTY = "pushed_version"  # PushedModel: the version directory's name
PUSHED_DESTINATION_PROPERTY = "pushed_destination"  # PushedModel: the version directory
# Set by `agnews run` on each execution it ran: the process's CPU seconds (its own and its
# child processes') while the component ran. ML Metadata records only wall times.
CPU_SECONDS_PROPERTY = "cpu_seconds"


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


def rejected_counts(rows: dict[str, int]) -> dict[str, int]:
    """The rejected rows per reason, of a summary's rows per outcome."""
    return {reason: count for reason, count in rows.items() if reason not in (ACCEPTED, BLANK_LINE)}


def read_summary(examples_uri: str) -> dict[str, int]:
    """Rows per outcome (`accepted` or a rejection reason) of one ExampleGen run."""
    return read_json(os.path.join(examples_uri, SUMMARY_FILE_NAME))
