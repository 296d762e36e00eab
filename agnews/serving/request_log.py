"""Sampled request logs: PredictionLog TFRecords, the record format of TF Serving's warmup file
and of its `logging_config`, so TFDV, TFX's BulkInferrer outputs and warmup tooling read them.

Records go through a queue to one writer thread (the event loop never waits on a file). Each file
is written under a `.tmp` name and renamed when closed, after `records_per_file` records,
`roll_s` seconds or at shutdown: a reader globbing `*.tfrecord` never sees a half-written file.
"""

from __future__ import annotations

import os
import queue
import random
import threading
import time

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from components import features

SUFFIX = ".tfrecord"
DEFAULT_RECORDS_PER_FILE = 10_000
DEFAULT_ROLL_S = 60.0


def read_logs(directory: str) -> list[prediction_log_pb2.PredictionLog]:
    """Every PredictionLog in the closed log files of `directory`."""
    paths = sorted(tf.io.gfile.glob(os.path.join(directory, f"*{SUFFIX}")))
    return (
        [
            prediction_log_pb2.PredictionLog.FromString(record.numpy())
            for record in tf.data.TFRecordDataset(paths)
        ]
        if paths
        else []
    )


def _prediction_log(version, columns: dict, outputs: dict, sample_rate: float) -> bytes:
    log = prediction_log_pb2.PredictionLog()
    spec = log.log_metadata.model_spec
    spec.name, spec.signature_name = version.model_name, features.SERVING_DEFAULT
    spec.version.value = version.number
    log.log_metadata.sampling_config.sampling_rate = sample_rate
    request = predict_pb2.PredictRequest()
    request.model_spec.CopyFrom(spec)
    for key, values in columns.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(np.asarray(values, dtype=object)))
    log.predict_log.request.CopyFrom(request)
    log.predict_log.response.model_spec.CopyFrom(spec)
    for key, values in outputs.items():
        log.predict_log.response.outputs[key].CopyFrom(tf.make_tensor_proto(values))
    return log.SerializeToString()


class RequestLog:
    def __init__(
        self,
        directory: str,
        sample_rate: float,
        records_per_file: int = DEFAULT_RECORDS_PER_FILE,
        roll_s: float = DEFAULT_ROLL_S,
    ):
        self.directory, self.sample_rate = directory, sample_rate
        self.records_per_file, self.roll_s = records_per_file, roll_s
        tf.io.gfile.makedirs(directory)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._write, name="request-log", daemon=True)
        self._thread.start()

    def maybe_log(self, version, columns: dict, outputs: dict) -> None:
        if random.random() < self.sample_rate:
            self._queue.put((version, columns, outputs))

    def close(self) -> None:
        """Writes what is queued, closes and renames the open file."""
        self._queue.put(None)
        self._thread.join()

    def _write(self) -> None:
        writer, path, count, opened, sequence = None, "", 0, 0.0, 0
        while True:
            try:
                item = self._queue.get(timeout=1.0)
            except queue.Empty:
                item = ...
            if writer and (
                item is None
                or count >= self.records_per_file
                or time.monotonic() - opened >= self.roll_s
            ):
                writer.close()
                tf.io.gfile.rename(path + ".tmp", path, overwrite=True)
                writer = None
            if item is None:
                return
            if item is ...:
                continue
            if writer is None:
                sequence += 1
                path = os.path.join(
                    self.directory,
                    f"prediction_log-{time.strftime('%Y%m%dT%H%M%S')}"
                    f"-{os.getpid()}-{sequence:05d}{SUFFIX}",
                )
                writer, count, opened = tf.io.TFRecordWriter(path + ".tmp"), 0, time.monotonic()
            writer.write(_prediction_log(*item, self.sample_rate))
            count += 1
