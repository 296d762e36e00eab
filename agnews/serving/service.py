"""The predict path REST and gRPC share: version lookup, row limit, batching, request log, metrics."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import tensorflow as tf

from agnews.serving import errors
from agnews.serving.batcher import Batcher, rows, run_signature
from agnews.serving.metrics import Metrics
from agnews.serving.request_log import RequestLog
from agnews.serving.store import ModelStore, Version

# TF Serving's `API` label values.
PREDICT, GET_MODEL_METADATA, GET_MODEL_STATUS = "Predict", "GetModelMetadata", "GetModelStatus"


class PredictService:
    def __init__(
        self,
        store: ModelStore,
        metrics: Metrics,
        max_batch: int,
        batcher: Batcher | None = None,
        request_log: RequestLog | None = None,
    ):
        self.store, self.metrics, self.max_batch = store, metrics, max_batch
        self.batcher, self.request_log = batcher, request_log
        # Without batching, each request makes its own call; a few run at once, as TF Serving's
        # request threads do (TensorFlow spreads each call over the cores anyway).
        self._calls = None if batcher else ThreadPoolExecutor(4, thread_name_prefix="predict")

    async def predict(
        self,
        model_name: str,
        version: int | None,
        label: str | None,
        columns: dict[str, list[bytes]],
    ) -> tuple[Version, dict[str, np.ndarray]]:
        """(the version that answered, its outputs) for columns of UTF-8 strings."""
        served = self.store.serving(model_name, version, label)
        if rows(columns) > self.max_batch:
            raise errors.invalid(
                f"Invalid argument: batch of {rows(columns)} is larger than the "
                f"limit of {self.max_batch}."
            )
        signature = served.loaded.signature
        try:
            if self.batcher:
                outputs = await self.batcher.run(signature, columns, model_name)
            else:
                outputs = await asyncio.get_running_loop().run_in_executor(
                    self._calls, run_signature, signature, columns
                )
        except tf.errors.InvalidArgumentError as error:
            raise errors.invalid(error.message) from None
        if self.request_log:
            self.request_log.maybe_log(served, columns, outputs)
        return served, outputs

    def observe(
        self,
        model_name: str,
        version: str,
        api: str,
        entrypoint: str,
        error: BaseException | None,
        started: float,
    ) -> None:
        """Counts one request under TF Serving's metrics and ours (`started`: time.perf_counter())."""
        status = errors.status_name(error)
        self.metrics.request_count.labels(model_name, status).inc()
        self.metrics.request_latency.labels(model_name, api, entrypoint).observe(
            (time.perf_counter() - started) * 1e6
        )
        self.metrics.requests.labels(model_name, version, api, entrypoint, status).inc()

    def close(self) -> None:
        if self._calls:
            self._calls.shutdown(wait=True)
        if self.request_log:
            self.request_log.close()
