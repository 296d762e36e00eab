"""TF Serving's gRPC API (`tensorflow.serving.PredictionService` Predict and GetModelMetadata,
`ModelService.GetModelStatus`) on grpc.aio, from tensorflow-serving-api's own generated code,
so its `PredictionServiceStub` works unchanged. Errors carry TF Serving's status codes."""

from __future__ import annotations

import time

import grpc
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from agnews.serving import errors
from agnews.serving.batcher import INPUT_KEYS, OUTPUT_KEYS
from agnews.serving.service import GET_MODEL_METADATA, GET_MODEL_STATUS, PREDICT, PredictService
from agnews.serving.store import Version
from components import features

SIGNATURE_DEF_FIELD = "signature_def"


def _version_choice(spec) -> tuple[int | None, str | None]:
    choice = spec.WhichOneof("version_choice")
    return (
        spec.version.value if choice == "version" else None,
        spec.version_label if choice == "version_label" else None,
    )


def _model_spec(spec, version: Version, signature_name: str = features.SERVING_DEFAULT) -> None:
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


def metadata_response(version: Version) -> get_model_metadata_pb2.GetModelMetadataResponse:
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    _model_spec(response.model_spec, version, "")
    response.metadata[SIGNATURE_DEF_FIELD].Pack(version.loaded.signature_defs)
    return response


def signature_defs(response: get_model_metadata_pb2.GetModelMetadataResponse):
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata[SIGNATURE_DEF_FIELD].Unpack(signature_map)
    return signature_map


def _columns(inputs) -> dict[str, list[bytes]]:
    """The request's string vectors, or TF Serving's INVALID_ARGUMENT for what the signature lacks."""
    sent, wanted = set(inputs), set(INPUT_KEYS)
    if sent != wanted:
        raise errors.invalid(
            f"input size does not match signature: {len(sent)}!={len(wanted)} len({{{','.join(sorted(sent))}}}) "
            f"!= len({{{','.join(sorted(wanted))}}}). Sent extra: {{{','.join(sorted(sent - wanted))}}}. "
            f"Missing but required: {{{','.join(sorted(wanted - sent))}}}."
        )
    columns = {}
    for key in INPUT_KEYS:
        tensor = inputs[key]
        if tensor.dtype != types_pb2.DT_STRING:
            raise errors.invalid(
                f"Expects arg[{INPUT_KEYS.index(key)}] ({key}) to be string but "
                f"{types_pb2.DataType.Name(tensor.dtype)[3:].lower()} is provided"
            )  # TF's DataTypeString
        dims = [dim.size for dim in tensor.tensor_shape.dim]
        if len(dims) != 1 or dims[0] != len(tensor.string_val):
            raise errors.invalid(
                f"input '{key}' must be a vector of strings, shape [batch]; got shape {dims}"
            )
        columns[key] = list(tensor.string_val)
    if len({len(values) for values in columns.values()}) != 1:
        raise errors.invalid(
            "Invalid argument: 'title' and 'description' must have the same length."
        )
    if not columns[features.TITLE_KEY]:
        raise errors.invalid("Invalid argument: empty batch.")
    return columns


class _Observed:
    """Counts one call under the request metrics and turns any error into its gRPC status."""

    def __init__(self, service: PredictService, api: str):
        self.service, self.api = service, api

    async def run(self, context, model_name: str, answer):
        started, version, error = time.perf_counter(), "", None
        try:
            response, version = await answer()
            return response
        except errors.ServingError as served_error:
            error = served_error
        except Exception as internal:  # noqa: BLE001  (a server answers; it does not crash)
            error = internal
        finally:
            self.service.observe(model_name, version, self.api, "GRPC", error, started)
        if isinstance(error, errors.ServingError):
            await context.abort(error.code, str(error))
        await context.abort(
            grpc.StatusCode.INTERNAL, f"Internal error: {type(error).__name__}: {error}"
        )


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, service: PredictService):
        self.service = service

    async def Predict(self, request: predict_pb2.PredictRequest, context):  # noqa: N802  (gRPC's name)
        async def answer():
            spec = request.model_spec
            if spec.signature_name not in ("", features.SERVING_DEFAULT):
                raise errors.invalid(
                    f'Serving signature name: "{spec.signature_name}" not found in signature def'
                )
            unknown = set(request.output_filter) - set(OUTPUT_KEYS)
            if unknown:
                raise errors.invalid(
                    f"output tensor alias not found in signature: {sorted(unknown)[0]} "
                    f"Outputs expected to be in the set {{{','.join(OUTPUT_KEYS)}}}."
                )
            version, label = _version_choice(spec)
            served, outputs = await self.service.predict(
                spec.name, version, label, _columns(request.inputs)
            )
            response = predict_pb2.PredictResponse()
            _model_spec(response.model_spec, served)
            for key in request.output_filter or OUTPUT_KEYS:
                response.outputs[key].CopyFrom(tf.make_tensor_proto(outputs[key]))
            return response, str(served.number)

        return await _Observed(self.service, PREDICT).run(context, request.model_spec.name, answer)

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
            served = self.service.store.serving(
                request.model_spec.name, *_version_choice(request.model_spec)
            )
            return metadata_response(served), str(served.number)

        return await _Observed(self.service, GET_MODEL_METADATA).run(
            context, request.model_spec.name, answer
        )


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, service: PredictService):
        self.service = service

    async def GetModelStatus(self, request, context):  # noqa: N802
        async def answer():
            return status_response(
                self.service.store.statuses(
                    request.model_spec.name, *_version_choice(request.model_spec)
                )
            ), ""

        return await _Observed(self.service, GET_MODEL_STATUS).run(
            context, request.model_spec.name, answer
        )


def add_services(server: grpc.aio.Server, service: PredictService) -> None:
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(service), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(service), server)
