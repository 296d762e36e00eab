"""What the server answers, whichever API asked: TF Serving's Predict, GetModelMetadata and
GetModelStatus over the served versions.

REST (`rest`) and gRPC (`grpc_api`) each decode a request into the types here and encode what
comes back; all in between happens here, once: the checks a predict request must pass (with TF
Serving's messages, as `errors.ServingError`), which version answers, batching, the request log
and the request metrics. Metadata and status come back as TF Serving's own response messages: gRPC
sends them as they are, REST as their JSON mapping, as TF Serving does.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, model_pb2

from agnews.serving import errors
from agnews.serving.batcher import Batcher, run_signature
from agnews.serving.canary import CanaryGuard
from agnews.serving.metrics import Metrics
from agnews.serving.request_log import RequestLog
from agnews.serving.store import ModelStore, Served, Version
from components import features

# The serving signature's inputs (in its argument order) and outputs (in the order answers list
# them): what every pushed version takes and gives (components/signatures.py exports them).
INPUT_KEYS = features.TEXT_KEYS
OUTPUT_KEYS = (features.PROBABILITIES_KEY, features.CLASS_ID_KEY, features.LABEL_NAME_KEY)
SIGNATURE_DEF_FIELD = "signature_def"  # the one GetModelMetadata field, as in TF Serving
# TF Serving's `API` label values.
PREDICT, GET_MODEL_METADATA, GET_MODEL_STATUS = "Predict", "GetModelMetadata", "GetModelStatus"


def _names(keys) -> str:
    return "{" + ",".join(sorted(keys)) + "}"


@dataclasses.dataclass(frozen=True)
class PredictRequest:
    """A predict request as both APIs carry it: the model and version asked for (a number, a
    label or neither: the newest), the serving signature's inputs as sent (input name -> one
    UTF-8 string per row), the signature ("" is serving_default, as in TF Serving) and the
    outputs wanted (none named: all of them)."""

    model_name: str
    version: int | None
    label: str | None
    columns: dict[str, list[bytes]]
    signature_name: str = ""
    output_filter: tuple[str, ...] = ()

    @property
    def rows(self) -> int:
        return len(next(iter(self.columns.values()), []))

    @property
    def output_keys(self) -> tuple[str, ...]:
        return self.output_filter or OUTPUT_KEYS

    def check(self, max_batch: int) -> None:
        """TF Serving's INVALID_ARGUMENT, with its message, for a request the signature cannot
        answer: another signature, an unknown output, inputs it lacks or does not take, inputs
        of different lengths, no rows, or more rows than `max_batch`."""
        if self.signature_name not in ("", features.SERVING_DEFAULT):
            raise errors.invalid(
                f'Serving signature name: "{self.signature_name}" not found in signature def'
            )
        unknown = set(self.output_filter) - set(OUTPUT_KEYS)
        if unknown:
            raise errors.invalid(
                f"output tensor alias not found in signature: {sorted(unknown)[0]} "
                f"Outputs expected to be in the set {{{','.join(OUTPUT_KEYS)}}}."
            )
        sent, wanted = set(self.columns), set(INPUT_KEYS)
        if sent != wanted:
            raise errors.invalid(
                f"input size does not match signature: {len(sent)}!={len(wanted)} "
                f"len({_names(sent)}) != len({_names(wanted)}). "
                f"Sent extra: {_names(sent - wanted)}. "
                f"Missing but required: {_names(wanted - sent)}."
            )
        if len({len(values) for values in self.columns.values()}) != 1:
            quoted = " and ".join(f"'{key}'" for key in INPUT_KEYS)
            raise errors.invalid(f"Invalid argument: {quoted} must have the same length.")
        if not self.rows:
            raise errors.invalid("Invalid argument: empty batch.")
        if self.rows > max_batch:
            raise errors.invalid(
                f"Invalid argument: batch of {self.rows} is larger than the limit of {max_batch}."
            )


@dataclasses.dataclass(frozen=True)
class Prediction:
    """The version that answered and the outputs asked for (name -> one value per row), in the
    order of OUTPUT_KEYS or of the request's output filter."""

    version: Version
    outputs: dict[str, np.ndarray]


def fill_model_spec(
    spec: model_pb2.ModelSpec, version: Version, signature_name: str = features.SERVING_DEFAULT
) -> None:
    """The `model_spec` of an answer: the model, the version that answered and the signature."""
    spec.name, spec.signature_name = version.model_name, signature_name
    spec.version.value = version.number


def status_response(versions: list[Version]) -> get_model_status_pb2.GetModelStatusResponse:
    response = get_model_status_pb2.GetModelStatusResponse()
    for version in versions:
        status = response.model_version_status.add(version=version.number)
        status.state = get_model_status_pb2.ModelVersionStatus.State.Value(version.state)
        status.status.SetInParent()  # error_code OK unless the load failed
        if version.error:
            status.status.error_code = 2  # tensorflow.error.Code UNKNOWN: the load failed
            status.status.error_message = version.error
    return response


def metadata_response(served: Served) -> get_model_metadata_pb2.GetModelMetadataResponse:
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    fill_model_spec(response.model_spec, served.version, "")
    response.metadata[SIGNATURE_DEF_FIELD].Pack(served.loaded.signature_defs)
    return response


class PredictService:
    def __init__(
        self,
        store: ModelStore,
        metrics: Metrics,
        max_batch: int,
        batcher: Batcher | None = None,
        request_log: RequestLog | None = None,
        canary_guard: CanaryGuard | None = None,
    ):
        self.store, self.metrics, self.max_batch = store, metrics, max_batch
        self.batcher, self.request_log, self.canary_guard = batcher, request_log, canary_guard
        # Without batching, each request makes its own call; a few run at once, as TF Serving's
        # request threads do (TensorFlow spreads each call over the cores anyway).
        self._calls = None if batcher else ThreadPoolExecutor(4, thread_name_prefix="predict")

    def servable(self, model_name: str, version: int | None, label: str | None) -> Served:
        """The version a predict request goes to. The transports ask before they decode the
        request's inputs, so an unknown model or version is NOT_FOUND whatever was sent, as in
        TF Serving (which finds the servable first)."""
        return self.store.serving(model_name, version, label)

    async def predict(self, request: PredictRequest, served: Served) -> Prediction:
        """Checks the request, then answers it with `served` (servable()'s answer for it)."""
        request.check(self.max_batch)
        columns = request.columns
        failed = True  # by the model: what CanaryGuard judges a canary on
        try:
            if self.batcher:
                outputs = await self.batcher.run(
                    served.loaded.signature, columns, request.model_name
                )
            else:
                outputs = await asyncio.get_running_loop().run_in_executor(
                    self._calls, run_signature, served.loaded.signature, columns
                )
            failed = False
        except tf.errors.InvalidArgumentError as error:
            raise errors.invalid(error.message) from None
        finally:
            version = served.version
            self.metrics.model_calls.labels(
                version.model_name,
                version.number,
                self.store.label_of(version.model_name, version.number) or "",
                "FAILED" if failed else "OK",
            ).inc()
            if self.canary_guard:
                self.canary_guard.record(version, failed)
        if self.request_log:
            self.request_log.maybe_log(served.version, columns, outputs)
        return Prediction(served.version, {key: outputs[key] for key in request.output_keys})

    def model_metadata(
        self, model_name: str, version: int | None = None, label: str | None = None
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        """The serving version's signatures (TF Serving's one metadata field, signature_def)."""
        return metadata_response(self.store.serving(model_name, version, label))

    def model_status(
        self, model_name: str, version: int | None = None, label: str | None = None
    ) -> get_model_status_pb2.GetModelStatusResponse:
        """Every version the server knows of the model, newest first, or the one asked for."""
        return status_response(self.store.statuses(model_name, version, label))

    def observe(
        self,
        model_name: str,
        version: str,
        api: str,
        entrypoint: str,
        error: errors.ServingError | None,
        started: float,
    ) -> None:
        """Counts one request under TF Serving's metrics and ours (`version`: the one that
        answered, "" if none did; `started`: its time.perf_counter())."""
        status = errors.status_name(error)
        self.metrics.request_count.labels(model_name, status).inc()
        self.metrics.request_latency.labels(model_name, api, entrypoint).observe(
            (time.perf_counter() - started) * 1e6
        )
        label = (self.store.label_of(model_name, int(version)) if version else None) or ""
        self.metrics.requests.labels(model_name, version, label, api, entrypoint, status).inc()

    def close(self) -> None:
        if self._calls:
            self._calls.shutdown(wait=True)
        if self.request_log:
            self.request_log.close()
