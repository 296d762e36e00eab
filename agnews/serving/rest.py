"""TF Serving's REST API as a bare ASGI app (run by uvicorn): routes, limits and error bodies.

A bare app rather than a framework: five routes, and each layer a framework adds costs per request
on a 2-core machine where the model itself takes well under a millisecond per example.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import grpc
from google.protobuf import json_format

from agnews.serving import errors, grpc_api
from agnews.serving.batcher import INPUT_KEYS, OUTPUT_KEYS
from agnews.serving.service import GET_MODEL_METADATA, GET_MODEL_STATUS, PREDICT, PredictService
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


def _columns_from_instances(instances: Any) -> dict[str, list]:
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
    if not isinstance(inputs, dict):
        raise errors.invalid("'inputs' must be an object with 'title' and 'description' lists.")
    missing = [key for key in INPUT_KEYS if key not in inputs]
    if missing:
        raise errors.invalid(f"Invalid argument: 'inputs' does not have named input: {missing[0]}")
    columns = {
        key: inputs[key] if isinstance(inputs[key], list) else [inputs[key]] for key in INPUT_KEYS
    }
    lengths = {len(values) for values in columns.values()}
    if len(lengths) != 1:
        raise errors.invalid(
            "Invalid argument: 'title' and 'description' must have the same length."
        )
    if 0 in lengths:
        raise errors.invalid("Invalid argument: empty batch.")
    return columns


def parse_predict_request(body: bytes) -> tuple[dict[str, list[bytes]], bool]:
    """(columns of UTF-8 strings, row_format) from a TF Serving predict body."""
    try:
        request = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise errors.invalid(f"JSON Parse error: {error}") from None
    if not isinstance(request, dict) or ("instances" in request) == ("inputs" in request):
        raise errors.invalid(
            "Missing 'inputs' or 'instances' key (exactly one of them is required)."
        )
    signature = request.get("signature_name", features.SERVING_DEFAULT)
    if signature != features.SERVING_DEFAULT:
        raise errors.invalid(f'Serving signature name: "{signature}" not found in signature def')
    row_format = "instances" in request
    columns = (
        _columns_from_instances(request["instances"])
        if row_format
        else _columns_from_inputs(request["inputs"])
    )
    encoded = {}
    for key, values in columns.items():
        if not all(isinstance(value, str) for value in values):
            raise errors.invalid(f"Invalid argument: '{key}' values must be strings.")
        try:
            encoded[key] = [value.encode("utf-8") for value in values]
        except (
            UnicodeEncodeError
        ) as error:  # JSON allows lone surrogates ("\ud800"); UTF-8 does not
            raise errors.invalid(
                f"Invalid argument: a '{key}' string is not valid Unicode: {error.reason}."
            ) from None
    return encoded, row_format


def predict_response(outputs: dict, row_format: bool) -> dict:
    lists = {key: outputs[key].tolist() for key in OUTPUT_KEYS}
    lists[features.LABEL_NAME_KEY] = [label.decode() for label in lists[features.LABEL_NAME_KEY]]
    if row_format:
        return {"predictions": [dict(zip(OUTPUT_KEYS, row)) for row in zip(*lists.values())]}
    return {"outputs": lists}


def _version(requested: str | None, model: str) -> int | None:
    if requested is None:
        return None
    if not requested.isdigit():
        raise errors.not_found(f"Servable not found for request: Specific({model}, {requested})")
    return int(requested)


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
                [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")],
            )
            return
        started, route = time.perf_counter(), _ROUTE.match(scope["path"])
        api = (
            GET_MODEL_METADATA
            if route and route["metadata"]
            else PREDICT
            if route and route["predict"]
            else GET_MODEL_STATUS
        )
        version, error, close = "", None, False
        try:
            if not route:
                raise errors.not_found(f"Servable not found for request: Latest({scope['path']})")
            status, payload, version = await self._handle(scope, receive, route)
        except errors.ServingError as served_error:
            error, close = served_error, isinstance(served_error, _BodyTooLarge)
            status, payload = served_error.http_status, {"error": str(served_error)}
        except Exception as internal:  # noqa: BLE001  (a server answers; it does not crash)
            error, status, payload = (
                internal,
                500,
                {"error": f"Internal error: {type(internal).__name__}: {internal}"},
            )
        await _send(
            send,
            status,
            json.dumps(payload).encode(),
            _JSON + [(b"connection", b"close")] if close else _JSON,
        )
        if route:
            self.service.observe(route["model"], version, api, "REST", error, started)

    async def _handle(self, scope, receive, route) -> tuple[int, dict, str]:
        """(HTTP status, JSON payload, version that answered) of a request on a model's route."""
        model, label = route["model"], route["label"]
        version = _version(route["version"], model)
        method = scope["method"]
        if not route["predict"]:
            if method != "GET":
                raise errors.invalid(f"{method} is not supported here; use GET.")
            if route["metadata"]:
                response = grpc_api.metadata_response(
                    self.service.store.serving(model, version, label)
                )
                return (
                    200,
                    {
                        "model_spec": json_format.MessageToDict(response.model_spec),
                        "metadata": {
                            "signature_def": json_format.MessageToDict(
                                grpc_api.signature_defs(response), preserving_proto_field_name=True
                            )
                        },
                    },
                    "",
                )
            response = grpc_api.status_response(self.service.store.statuses(model, version, label))
            return (
                200,
                json_format.MessageToDict(
                    response, including_default_value_fields=True, preserving_proto_field_name=True
                ),
                "",
            )
        if method != "POST":
            raise errors.invalid("Predict requests must be POST.")
        columns, row_format = parse_predict_request(await self._body(scope, receive))
        served, outputs = await self.service.predict(model, version, label, columns)
        return 200, predict_response(outputs, row_format), str(served.number)

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


async def _send(send, status: int, body: bytes, headers: list) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": headers + [(b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
