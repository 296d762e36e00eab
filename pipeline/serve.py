"""`agnews serve`: TF Serving's REST API for the pushed model, for local use and tests.

Client code written against it works unchanged against `tensorflow/serving` (README). It
serves the newest numeric version under the model directory, notices a newly pushed version
without a restart, keeps answering with the old one while the new one loads, and answers every
bad request with TF Serving's `{"error": ...}` body instead of a stack trace. Like TF Serving
with `--enable_batching`, it gathers concurrent requests into one signature call.
"""
from __future__ import annotations

import collections
import json
import os
import queue
import re
import threading
import time
from concurrent.futures import Future
from typing import Any

import tensorflow as tf
from werkzeug.exceptions import HTTPException
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from components import features, settings
from pipeline.predict import load_warm, model_versions

MODEL_NAME = settings.SERVING_MODEL_NAME
DEFAULT_HOST = settings.DEFAULT_SERVE_HOST
DEFAULT_PORT = settings.DEFAULT_SERVE_PORT
DEFAULT_MAX_BODY_BYTES = settings.DEFAULT_MAX_BODY_BYTES
DEFAULT_MAX_BATCH = settings.DEFAULT_MAX_BATCH
DEFAULT_BATCH_MAX_ROWS = settings.DEFAULT_BATCH_MAX_ROWS
DEFAULT_BATCH_TIMEOUT_MS = settings.DEFAULT_BATCH_TIMEOUT_MS
INPUT_KEYS = (features.TITLE_KEY, features.DESCRIPTION_KEY)
OUTPUT_KEYS = (features.PROBABILITIES_KEY, features.CLASS_ID_KEY, features.LABEL_NAME_KEY)

_ROUTE = re.compile(r"^/v1/models/(?P<model>[^/:]+)(?:/versions/(?P<version>[^/:]+))?(?P<verb>:predict)?$")


class BadRequest(Exception):
    """Answered with HTTP 400 and TF Serving's error body."""


class NotFound(Exception):
    """Answered with HTTP 404 and TF Serving's error body."""


class ModelVersions:
    """Numeric version directories under `base_dir`, loaded on first use and cached."""

    def __init__(self, base_dir: str):
        self.base_dir = base_dir
        self._loaded: dict[int, Any] = {}
        self._lock = threading.Lock()

    def available(self) -> list[int]:
        return model_versions(self.base_dir)

    def latest(self) -> int:
        versions = self.available()
        if not versions:
            raise NotFound(f"Servable not found for request: Latest({MODEL_NAME})")
        return versions[-1]

    def signature(self, version: int):
        if version not in self.available():
            raise NotFound(f"Servable not found for request: Specific({MODEL_NAME}, {version})")
        with self._lock:
            if version not in self._loaded:
                self._loaded[version] = load_warm(os.path.join(self.base_dir, str(version)))
            return self._loaded[version].signatures[features.SERVING_DEFAULT]


def _columns_from_instances(instances: Any) -> dict[str, list[str]]:
    if not isinstance(instances, list) or not instances:
        raise BadRequest("'instances' must be a non-empty list of objects with 'title' and 'description'.")
    columns: dict[str, list[str]] = {key: [] for key in INPUT_KEYS}
    for index, instance in enumerate(instances):
        if not isinstance(instance, dict):
            raise BadRequest(f"Failed to process element: {index} of 'instances' list. "
                             "Error: Invalid argument: expected a JSON object with named inputs.")
        for key in INPUT_KEYS:
            if key not in instance:
                raise BadRequest(f"Failed to process element: {index} key: {key} of 'instances' list. "
                                 f"Error: Invalid argument: JSON object: does not have named input: {key}")
            columns[key].append(instance[key])
    return columns


def _columns_from_inputs(inputs: Any) -> dict[str, list[str]]:
    if not isinstance(inputs, dict):
        raise BadRequest("'inputs' must be an object with 'title' and 'description' lists.")
    missing = [key for key in INPUT_KEYS if key not in inputs]
    if missing:
        raise BadRequest(f"Invalid argument: 'inputs' does not have named input: {missing[0]}")
    columns = {key: inputs[key] if isinstance(inputs[key], list) else [inputs[key]] for key in INPUT_KEYS}
    lengths = {len(values) for values in columns.values()}
    if len(lengths) != 1:
        raise BadRequest("Invalid argument: 'title' and 'description' must have the same length.")
    if 0 in lengths:
        raise BadRequest("Invalid argument: empty batch.")
    return columns


def parse_predict_request(body: bytes, max_batch: int) -> tuple[dict[str, list[str]], bool]:
    """(columns of strings, row_format) from a TF Serving predict body, or BadRequest."""
    try:
        request = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise BadRequest(f"JSON Parse error: {error}") from None
    if not isinstance(request, dict) or ("instances" in request) == ("inputs" in request):
        raise BadRequest("Missing 'inputs' or 'instances' key (exactly one of them is required).")
    signature = request.get("signature_name", features.SERVING_DEFAULT)
    if signature != features.SERVING_DEFAULT:
        raise BadRequest(f"Serving signature name: \"{signature}\" not found in signature def")
    row_format = "instances" in request
    columns = (_columns_from_instances(request["instances"]) if row_format
               else _columns_from_inputs(request["inputs"]))
    for key, values in columns.items():
        if not all(isinstance(value, str) for value in values):
            raise BadRequest(f"Invalid argument: '{key}' values must be strings.")
        try:
            for value in values:
                value.encode("utf-8")
        except UnicodeEncodeError as error:  # JSON allows lone surrogates ("\ud800"); UTF-8 does not
            raise BadRequest(f"Invalid argument: a '{key}' string is not valid Unicode: {error.reason}.") from None
    if len(columns[features.TITLE_KEY]) > max_batch:
        raise BadRequest(f"Invalid argument: batch of {len(columns[features.TITLE_KEY])} is larger "
                         f"than the limit of {max_batch}.")
    return columns, row_format


def run_signature(signature, columns: dict[str, list[str]]) -> dict[str, list]:
    """One signature call: output name -> one value per row."""
    outputs = signature(**{key: tf.constant(values, tf.string) for key, values in columns.items()})
    lists = {key: outputs[key].numpy().tolist() for key in OUTPUT_KEYS}
    lists[features.LABEL_NAME_KEY] = [v.decode() for v in lists[features.LABEL_NAME_KEY]]
    return lists


def predict_response(lists: dict[str, list], row_format: bool) -> dict:
    if row_format:
        return {"predictions": [dict(zip(OUTPUT_KEYS, row)) for row in zip(*lists.values())]}
    return {"outputs": lists}


def _rows(columns: dict[str, list[str]]) -> int:
    return len(columns[features.TITLE_KEY])


class Batcher:
    """Gathers concurrent predict calls into one signature call, as TF Serving's batching does.

    One thread runs the calls. A batch takes the requests waiting when the thread is free, and
    those arriving within `timeout_s` of its first one, up to `max_rows` rows; under load the
    requests that queue while a batch runs make up the next one. When a merged call fails,
    each of its requests runs again alone, so a bad request fails alone, never its neighbours.
    """

    def __init__(self, max_rows: int = DEFAULT_BATCH_MAX_ROWS,
                 timeout_s: float = DEFAULT_BATCH_TIMEOUT_MS / 1000):
        self.max_rows, self.timeout_s = max_rows, timeout_s
        self._waiting: queue.Queue = queue.Queue()
        threading.Thread(target=self._serve_batches, name="batcher", daemon=True).start()

    def run(self, signature, columns: dict[str, list[str]]) -> dict[str, list]:
        """What run_signature(signature, columns) returns, computed in a shared batch."""
        result: Future = Future()
        self._waiting.put((signature, columns, result))
        return result.result()

    def _next_batch(self) -> list[tuple]:
        batch = [self._waiting.get()]
        rows = _rows(batch[0][1])
        deadline = time.monotonic() + self.timeout_s
        while rows < self.max_rows:
            try:
                item = self._waiting.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            batch.append(item)
            rows += _rows(item[1])
        return batch

    def _serve_batches(self) -> None:
        while True:
            by_signature = collections.defaultdict(list)  # one call per model version
            for signature, columns, result in self._next_batch():
                by_signature[signature].append((columns, result))
            for signature, requests in by_signature.items():
                self._run(signature, requests)

    def _run(self, signature, requests: list[tuple[dict, Future]]) -> None:
        merged = {key: [v for columns, _ in requests for v in columns[key]] for key in INPUT_KEYS}
        try:
            lists = run_signature(signature, merged)
        except Exception as error:  # noqa: BLE001  (answered per request)
            if len(requests) == 1:
                requests[0][1].set_exception(error)
            else:
                for request in requests:
                    self._run(signature, [request])
            return
        start = 0
        for columns, result in requests:
            end = start + _rows(columns)
            result.set_result({key: values[start:end] for key, values in lists.items()})
            start = end


class ServingApp:
    """The WSGI application: routes, limits and errors of TF Serving's REST API."""

    def __init__(self, model_dir: str, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
                 max_batch: int = DEFAULT_MAX_BATCH, batcher: Batcher | None = None):
        self.versions = ModelVersions(model_dir)
        self.max_body_bytes = max_body_bytes
        self.max_batch = max_batch
        self.batcher = batcher  # None: each request makes its own signature call

    def _version(self, requested: str | None) -> int:
        if requested is None:
            return self.versions.latest()
        if not requested.isdigit():
            raise NotFound(f"Servable not found for request: Specific({MODEL_NAME}, {requested})")
        return int(requested)

    def _status(self, version: int) -> dict:
        if version not in self.versions.available():
            raise NotFound(f"Could not find version {version} of model {MODEL_NAME}")
        return {"model_version_status": [{"version": str(version), "state": "AVAILABLE",
                                          "status": {"error_code": "OK", "error_message": ""}}]}

    def handle(self, request: Request) -> tuple[int, dict]:
        route = _ROUTE.match(request.path)
        if not route or route["model"] != MODEL_NAME:
            name = route["model"] if route else request.path
            raise NotFound(f"Servable not found for request: Latest({name})")
        version = self._version(route["version"])
        if not route["verb"]:
            if request.method != "GET":
                raise BadRequest(f"{request.method} is not supported here; use GET.")
            return 200, self._status(version)
        if request.method != "POST":
            raise BadRequest("Predict requests must be POST.")
        if (request.content_length or 0) > self.max_body_bytes:
            raise BadRequest(f"Request body larger than {self.max_body_bytes} bytes.")
        body = request.get_data(cache=False)
        if len(body) > self.max_body_bytes:
            raise BadRequest(f"Request body larger than {self.max_body_bytes} bytes.")
        columns, row_format = parse_predict_request(body, self.max_batch)
        signature = self.versions.signature(version)
        lists = (self.batcher.run(signature, columns) if self.batcher
                 else run_signature(signature, columns))
        return 200, predict_response(lists, row_format)

    def __call__(self, environ, start_response):
        try:
            status, payload = self.handle(Request(environ))
        except BadRequest as error:
            status, payload = 400, {"error": str(error)}
        except NotFound as error:
            status, payload = 404, {"error": str(error)}
        except HTTPException as error:
            status, payload = error.code or 400, {"error": error.description or str(error)}
        except Exception as error:  # noqa: BLE001  (a server answers; it does not crash)
            status, payload = 500, {"error": f"Internal error: {type(error).__name__}: {error}"}
        return Response(json.dumps(payload), status=status, mimetype="application/json")(
            environ, start_response)


def make_serving_server(model_dir: str, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, max_batch: int = DEFAULT_MAX_BATCH,
                        batcher: Batcher | None = None):
    """A threaded werkzeug server; `.serve_forever()` to run, `.shutdown()` to stop."""
    return make_server(host, port, ServingApp(model_dir, max_body_bytes, max_batch, batcher),
                       threaded=True)
