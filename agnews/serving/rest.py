"""TF Serving's REST API as a bare ASGI app (run by uvicorn): routes, the body limit, and TF
Serving's JSON decoded into the service's requests and its answers and errors encoded back.

A bare app rather than a framework: five routes, and each layer a framework adds costs time on
every request, which shows next to a model this quick (bench/README.md).
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import grpc
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2, model_pb2

from agnews.serving import errors, metrics
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
from components import features

METRICS_PATH = "/monitoring/prometheus/metrics"
_ROUTE = re.compile(
    r"^/v1/models/(?P<model>[^/:]+)"
    r"(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
    r"(?:(?P<metadata>/metadata)|(?P<predict>:predict))?$"
)
_JSON = [(b"content-type", b"application/json")]


class _BodyTooLarge(errors.ServingError):
    """A 400 after which the connection closes, so the rest of the body is never read."""


# Decoding: TF Serving's predict body -> PredictRequest.


def _columns_from_instances(instances: Any) -> dict[str, list]:
    """The row format: one object per row, each with every input (what else it has is ignored)."""
    if not isinstance(instances, list) or not instances:
        raise errors.invalid(
            "'instances' must be a non-empty list of objects with 'title' and 'description'."
        )
    columns: dict[str, list] = {key: [] for key in INPUT_KEYS}
    for index, instance in enumerate(instances):
        if not isinstance(instance, dict):
            raise errors.invalid(
                f"Failed to process element: {index} of 'instances' list. "
                "Error: Invalid argument: expected a JSON object with named inputs."
            )
        for key in INPUT_KEYS:
            if key not in instance:
                raise errors.invalid(
                    f"Failed to process element: {index} key: {key} of 'instances' list. "
                    f"Error: Invalid argument: JSON object: does not have named input: {key}"
                )
            columns[key].append(instance[key])
    return columns


def _columns_from_inputs(inputs: Any) -> dict[str, list]:
    """The columnar format: input name -> its list of values (a lone value is a list of one)."""
    if not isinstance(inputs, dict):
        raise errors.invalid("'inputs' must be an object with 'title' and 'description' lists.")
    return {key: values if isinstance(values, list) else [values] for key, values in inputs.items()}


def _utf8(columns: dict[str, list]) -> dict[str, list[bytes]]:
    encoded = {}
    for key, values in columns.items():
        if not all(isinstance(value, str) for value in values):
            raise errors.invalid(f"Invalid argument: '{key}' values must be strings.")
        try:
            encoded[key] = [value.encode("utf-8") for value in values]
        except UnicodeEncodeError as error:  # JSON allows lone surrogates ("\ud800"); UTF-8 not
            raise errors.invalid(
                f"Invalid argument: a '{key}' string is not valid Unicode: {error.reason}."
            ) from None
    return encoded


def parse_predict_request(
    body: bytes, model_name: str, version: int | None = None, label: str | None = None
) -> tuple[PredictRequest, bool]:
    """(the request, whether it came in the row format) from a TF Serving predict body; what
    the service checks for both APIs (lengths, limit, signature...) is left to it."""
    try:
        request = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise errors.invalid(f"JSON Parse error: {error}") from None
    if not isinstance(request, dict) or ("instances" in request) == ("inputs" in request):
        raise errors.invalid(
            "Missing 'inputs' or 'instances' key (exactly one of them is required)."
        )
    row_format = "instances" in request
    columns = (
        _columns_from_instances(request["instances"])
        if row_format
        else _columns_from_inputs(request["inputs"])
    )
    return (
        PredictRequest(
            model_name,
            version,
            label,
            _utf8(columns),
            signature_name=request.get("signature_name", features.SERVING_DEFAULT),
        ),
        row_format,
    )


def _version(requested: str | None, model: str) -> int | None:
    if requested is None:
        return None
    if not requested.isdigit():
        raise errors.not_found(f"Servable not found for request: Specific({model}, {requested})")
    return int(requested)


# Encoding: answers -> TF Serving's JSON.


def predict_response(outputs: dict, row_format: bool) -> dict:
    lists = {key: values.tolist() for key, values in outputs.items()}
    labels = lists.get(features.LABEL_NAME_KEY)
    if labels is not None:  # bytes from the signature, text in JSON
        lists[features.LABEL_NAME_KEY] = [label.decode() for label in labels]
    if row_format:
        return {
            "predictions": [
                dict(zip(lists, row, strict=True)) for row in zip(*lists.values(), strict=True)
            ]
        }
    return {"outputs": lists}


def metadata_json(response: get_model_metadata_pb2.GetModelMetadataResponse) -> dict:
    signature_defs = get_model_metadata_pb2.SignatureDefMap()
    response.metadata[SIGNATURE_DEF_FIELD].Unpack(signature_defs)
    return {
        "model_spec": json_format.MessageToDict(response.model_spec),
        "metadata": {
            SIGNATURE_DEF_FIELD: json_format.MessageToDict(
                signature_defs, preserving_proto_field_name=True
            )
        },
    }


class RestApp:
    def __init__(self, service: PredictService, max_body_bytes: int):
        self.service, self.max_body_bytes = service, max_body_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == METRICS_PATH:
            await _send(
                send,
                200,
                self.service.metrics.exposition(),
                [(b"content-type", metrics.CONTENT_TYPE.encode())],
            )
            return
        started, route = time.perf_counter(), _ROUTE.match(scope["path"])
        version, error = "", None
        try:
            if not route:
                raise errors.not_found(f"Servable not found for request: Latest({scope['path']})")
            status, payload, version = await self._handle(scope, receive, route)
        except Exception as raised:  # noqa: BLE001  (a server answers; it does not crash)
            error = errors.answered(raised)
            status, payload = error.http_status, {"error": str(error)}
        close = isinstance(error, _BodyTooLarge)
        await _send(
            send,
            status,
            json.dumps(payload).encode(),
            _JSON + [(b"connection", b"close")] if close else _JSON,
        )
        if route:
            self.service.observe(route["model"], version, _api(route), "REST", error, started)

    async def _handle(self, scope, receive, route: re.Match) -> tuple[int, dict, str]:
        """(HTTP status, JSON payload, version that answered) of a request on a model's route."""
        model, label = route["model"], route["label"]
        version = _version(route["version"], model)
        method = scope["method"]
        if route["predict"]:
            if method != "POST":
                raise errors.invalid("Predict requests must be POST.")
            served = self.service.servable(model, version, label)
            request, row_format = parse_predict_request(
                await self._body(scope, receive), model, version, label
            )
            prediction = await self.service.predict(request, served)
            spec = model_pb2.ModelSpec()
            fill_model_spec(spec, prediction.version)
            return (
                200,
                {
                    **predict_response(prediction.outputs, row_format),
                    "model_spec": json_format.MessageToDict(spec, preserving_proto_field_name=True),
                },
                str(prediction.version.number),
            )
        if method != "GET":
            raise errors.invalid(f"{method} is not supported here; use GET.")
        if route["metadata"]:
            metadata = self.service.model_metadata(model, version, label)
            return 200, metadata_json(metadata), str(metadata.model_spec.version.value)
        status = self.service.model_status(model, version, label)
        answer = json_format.MessageToDict(
            status, including_default_value_fields=True, preserving_proto_field_name=True
        )
        labels = self.service.store.labels(model)
        if labels:  # not in TF Serving's answer (its proto has no field for them): ours
            answer["version_labels"] = {name: str(number) for name, number in labels.items()}
        return 200, answer, ""

    async def _body(self, scope, receive) -> bytes:
        """The request body, refused as soon as it passes the limit (chunked bodies too)."""
        too_large = _BodyTooLarge(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"Request body larger than {self.max_body_bytes} bytes.",
        )
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body_bytes:
                raise too_large
        chunks, size = [], 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise too_large
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)


def _api(route: re.Match) -> str:
    """TF Serving's `API` label of a request on a model's route."""
    if route["metadata"]:
        return GET_MODEL_METADATA
    return PREDICT if route["predict"] else GET_MODEL_STATUS


async def _send(send, status: int, body: bytes, headers: list) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": headers + [(b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
