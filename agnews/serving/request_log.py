"""Sampled request logs: PredictionLog TFRecords, the record format of TF Serving's warmup file
and of its `logging_config`, so TFDV, TFX's BulkInferrer outputs and warmup tooling read them.

Records go through a queue to one writer thread (the event loop never waits on a file). Each file
is written under a `.tmp` name and renamed when closed, after `records_per_file` records,
`roll_s` seconds or at shutdown: a reader globbing `*.tfrecord` never sees a half-written file.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import random
import secrets
import threading
import time
from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from components import features

if TYPE_CHECKING:  # a type only: `agnews skew` reads logs without the server's modules
    from agnews.serving.store import Version

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


@dataclasses.dataclass(frozen=True)
class _Entry:
    """One sampled request: the version that answered, its inputs and its outputs."""

    version: Version
    columns: dict
    outputs: dict


def _prediction_log(entry: _Entry, sample_rate: float) -> bytes:
    log = prediction_log_pb2.PredictionLog()
    spec = log.log_metadata.model_spec
    spec.name, spec.signature_name = entry.version.model_name, features.SERVING_DEFAULT
    spec.version.value = entry.version.number
    log.log_metadata.sampling_config.sampling_rate = sample_rate
    request = predict_pb2.PredictRequest()
    request.model_spec.CopyFrom(spec)
    for key, values in entry.columns.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(np.asarray(values, dtype=object)))
    log.predict_log.request.CopyFrom(request)
    log.predict_log.response.model_spec.CopyFrom(spec)
    for key, values in entry.outputs.items():
        log.predict_log.response.outputs[key].CopyFrom(tf.make_tensor_proto(values))
    return log.SerializeToString()


class _File:
    """One log file: written under a `.tmp` name, renamed to its own when closed."""

    def __init__(self, path: str):
        self.path, self.count, self.opened = path, 0, time.monotonic()
        self._writer = tf.io.TFRecordWriter(path + ".tmp")

    def write(self, record: bytes) -> None:
        self._writer.write(record)
        self.count += 1

    def close(self) -> None:
        self._writer.close()
        tf.io.gfile.rename(self.path + ".tmp", self.path, overwrite=True)


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
        self._queue: queue.SimpleQueue[_Entry | None] = queue.SimpleQueue()  # None: stop
        self._sequence = 0  # files opened
        # In every file name: two logs of one process (servers in threads, a restart within a
        # second) never write the same file.
        self._token = secrets.token_hex(4)
        self._thread = threading.Thread(target=self._write, name="request-log", daemon=True)
        self._thread.start()

    def maybe_log(self, version: Version, columns: dict, outputs: dict) -> None:
        if random.random() < self.sample_rate:
            self._queue.put(_Entry(version, columns, outputs))

    def close(self) -> None:
        """Writes what is queued, closes and renames the open file."""
        self._queue.put(None)
        self._thread.join()

    def _write(self) -> None:
        """The writer thread: one record per entry; a file is closed when full, when `roll_s`
        old (checked at least every second) and at the end."""
        file: _File | None = None
        while True:
            try:
                entry = self._queue.get(timeout=1.0)
                stopping = entry is None
            except queue.Empty:  # nothing to write: only the roll-over check
                entry, stopping = None, False
            if file and (
                stopping
                or file.count >= self.records_per_file
                or time.monotonic() - file.opened >= self.roll_s
            ):
                file.close()
                file = None
            if stopping:
                return
            if entry is None:
                continue
            if file is None:
                file = self._open()
            file.write(_prediction_log(entry, self.sample_rate))

    def _open(self) -> _File:
        self._sequence += 1
        return _File(
            os.path.join(
                self.directory,
                f"prediction_log-{time.strftime('%Y%m%dT%H%M%S')}"
                f"-{os.getpid()}-{self._token}-{self._sequence:05d}{SUFFIX}",
            )
        )
