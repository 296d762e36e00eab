"""TF Serving's gRPC API (`tensorflow.serving.PredictionService` Predict and GetModelMetadata,
`ModelService.GetModelStatus`) on grpc.aio, from tensorflow-serving-api's own generated code,
so its `PredictionServiceStub` works unchanged. It decodes TF Serving's request messages into the
service's requests and encodes the answers; errors carry TF Serving's status codes."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from agnews.serving import errors
from agnews.serving.service import (
    GET_MODEL_METADATA,
    GET_MODEL_STATUS,
    INPUT_KEYS,
    PREDICT,
    SIGNATURE_DEF_FIELD,
    PredictRequest,
    PredictService,
    fill_model_spec,
)

# An RPC's answer: (the response message, the version that answered or "").
_Answer = Callable[[], Awaitable[tuple[Any, str]]]


def _version_choice(spec) -> tuple[int | None, str | None]:
    choice = spec.WhichOneof("version_choice")
    return (
        spec.version.value if choice == "version" else None,
        spec.version_label if choice == "version_label" else None,
    )


def _columns(inputs) -> dict[str, list[bytes]]:
    """The request's input tensors as columns. A tensor of an input the signature takes must be a
    vector of strings (TF's own messages otherwise); which inputs were sent is the service's
    check, so that any other tensor is kept for it to name."""
    columns = {}
    for key, tensor in inputs.items():
        if key in INPUT_KEYS:
            _check_string_vector(key, tensor)
        columns[key] = list(tensor.string_val)
    return columns


def _check_string_vector(key: str, tensor) -> None:
    if tensor.dtype != types_pb2.DT_STRING:
        dtype = types_pb2.DataType.Name(tensor.dtype)[3:].lower()  # TF's DataTypeString
        raise errors.invalid(
            f"Expects arg[{INPUT_KEYS.index(key)}] ({key}) to be string but {dtype} is provided"
        )
    dims = [dim.size for dim in tensor.tensor_shape.dim]
    if len(dims) != 1 or dims[0] != len(tensor.string_val):
        raise errors.invalid(
            f"input '{key}' must be a vector of strings, shape [batch]; got shape {dims}"
        )


def parse_predict_request(request: predict_pb2.PredictRequest) -> PredictRequest:
    """The service's request for a TF Serving PredictRequest message."""
    spec = request.model_spec
    version, label = _version_choice(spec)
    return PredictRequest(
        spec.name,
        version,
        label,
        _columns(request.inputs),
        signature_name=spec.signature_name,
        output_filter=tuple(request.output_filter),
    )


async def _observed(service: PredictService, api: str, model_name: str, answer: _Answer, context):
    """The RPC's response, counted under the request metrics; an error becomes its status."""
    started, version, error = time.perf_counter(), "", None
    try:
        response, version = await answer()
    except Exception as raised:  # noqa: BLE001  (a server answers; it does not crash)
        error = errors.answered(raised)
    finally:
        service.observe(model_name, version, api, "GRPC", error, started)
    if error is not None:
        await context.abort(error.code, str(error))
    return response


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, service: PredictService):
        self.service = service

    async def Predict(self, request: predict_pb2.PredictRequest, context):  # noqa: N802  (gRPC's)
        async def answer():
            served = self.service.servable(
                request.model_spec.name, *_version_choice(request.model_spec)
            )
            prediction = await self.service.predict(parse_predict_request(request), served)
            response = predict_pb2.PredictResponse()
            fill_model_spec(response.model_spec, prediction.version)
            for key, values in prediction.outputs.items():
                response.outputs[key].CopyFrom(tf.make_tensor_proto(values))
            return response, str(prediction.version.number)

        return await _observed(self.service, PREDICT, request.model_spec.name, answer, context)

    async def GetModelMetadata(self, request, context):  # noqa: N802
        async def answer():
            fields = set(request.metadata_field)
            if not fields:
                raise errors.invalid(
                    "GetModelMetadataRequest must specify at least one metadata_field"
                )
            if fields != {SIGNATURE_DEF_FIELD}:
                raise errors.invalid(
                    f"Metadata field {sorted(fields - {SIGNATURE_DEF_FIELD})[0]} is not supported"
                )
            response = self.service.model_metadata(
                request.model_spec.name, *_version_choice(request.model_spec)
            )
            return response, str(response.model_spec.version.value)

        return await _observed(
            self.service, GET_MODEL_METADATA, request.model_spec.name, answer, context
        )


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, service: PredictService):
        self.service = service

    async def GetModelStatus(self, request, context):  # noqa: N802
        async def answer():
            spec = request.model_spec
            return self.service.model_status(spec.name, *_version_choice(spec)), ""

        return await _observed(
            self.service, GET_MODEL_STATUS, request.model_spec.name, answer, context
        )


def add_services(server: grpc.aio.Server, service: PredictService) -> None:
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(service), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(service), server)
