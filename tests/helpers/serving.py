"""Talking to `agnews serve` as clients do, and laying out served model directories."""

import contextlib
import csv
import json
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc, predict_pb2

from agnews.serving.request_log import RequestLog
from agnews.serving.store import AVAILABLE, Version
from components import features
from pipeline.config import PROJECT_DIR
from tests.helpers.data import sample_lines

ROW = {"title": "Stocks slide as oil climbs", "description": "Wall Street fell."}


def copy_served_model(first_run, tmp_path, name="agnews"):
    """A copy of the first run's pushed model directory (its numeric versions) under tmp_path."""
    root, _ = first_run
    model_dir = tmp_path / "serving" / name
    shutil.copytree(root / "serving", model_dir)
    return model_dir


def version_dirs(model_dir) -> list[Path]:
    """A served model directory's numeric version directories, oldest first ([] when the
    directory does not exist)."""
    if not model_dir.exists():
        return []
    return sorted((p for p in model_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


def newest(model_dir) -> str:
    return version_dirs(model_dir)[-1].name


def push_copy(model_dir, version: int) -> None:
    """Adds a version as Pusher does: the whole directory appears at once (copy, then rename)."""
    staging = model_dir.parent / f".staging-{version}"
    shutil.copytree(model_dir / newest(model_dir), staging)
    staging.rename(model_dir / str(version))


def call(url, body=None, method=None):
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method or ("POST" if data is not None else "GET")
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def state(url, version) -> str | None:
    """The version's state in TF Serving's status answer, None while the server does not know it."""
    status, body = call(f"{url}/v1/models/agnews/versions/{version}")
    return body["model_version_status"][0]["state"] if status == 200 else None


def wait_for(condition, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@contextlib.contextmanager
def serving_process(*flags: str):
    """`agnews serve FLAGS` on free ports in its own process: yields (REST url, gRPC port, the
    process), then stops it if it still runs."""
    server = subprocess.Popen(
        [sys.executable, "-m", "agnews.cli", "serve", "--rest-port", "0", "--grpc-port", "0"]
        + list(flags),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=PROJECT_DIR,
    )
    try:
        line = server.stdout.readline()
        found = re.search(r"REST http://127\.0\.0\.1:(\d+)/.* gRPC 127\.0\.0\.1:(\d+)", line)
        assert found, (line, server.stderr.read() if server.poll() is not None else "")
        yield f"http://127.0.0.1:{found[1]}", int(found[2]), server
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait(timeout=60)


def serving_registry(model_dir, metadata_path, *flags: str, poll_s: float = 0.5):
    """`agnews serve --from-registry FLAGS` of model_dir's registry in metadata_path (see
    serving_process)."""
    return serving_process(
        *("--from-registry", "--model", str(model_dir), "--metadata-path", str(metadata_path)),
        *("--file-system-poll-wait-seconds", str(poll_s), *flags),
    )


def served_by(url: str, requests: int = 1, path: str = "") -> Counter:
    """How many of `requests` REST predictions to agnews`path` (naming no version by default)
    each version answered (0 for a failed request)."""
    counts: Counter = Counter()
    for _ in range(requests):
        status, body = call(f"{url}/v1/models/agnews{path}:predict", {"instances": [ROW]})
        counts[int(body["model_spec"]["version"]) if status == 200 else 0] += 1
    return counts


def grpc_label_state(port: int, label: str) -> tuple[int, str]:
    """(version, state) that gRPC's GetModelStatus gives for a version label of agnews."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name, request.model_spec.version_label = "agnews", label
        (status,) = (
            model_service_pb2_grpc.ModelServiceStub(channel)
            .GetModelStatus(request, timeout=60)
            .model_version_status
        )
        return status.version, get_model_status_pb2.ModelVersionStatus.State.Name(status.state)


TITLES = ["Stocks slide as oil climbs", "Mets win the pennant", "New chip doubles battery life"]
DESCRIPTIONS = ["Wall Street fell.", "", "A startup says its design uses half the power."]


def predict_request(
    titles=TITLES, descriptions=DESCRIPTIONS, name="agnews"
) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.inputs[features.TITLE_KEY].CopyFrom(tf.make_tensor_proto(titles))
    request.inputs[features.DESCRIPTION_KEY].CopyFrom(tf.make_tensor_proto(descriptions))
    return request


def save_failing_version(version_dir) -> None:
    """A version with a bug: a SavedModel with the serving signature's inputs that loads (it has
    no warmup requests to fail) and fails every call."""

    class Failing(tf.Module):
        @tf.function(
            input_signature=[
                tf.TensorSpec([None], tf.string, name=features.TITLE_KEY),
                tf.TensorSpec([None], tf.string, name=features.DESCRIPTION_KEY),
            ]
        )
        def serve(self, title, description):
            tf.debugging.assert_equal(tf.size(title), -1, message="a canary with a bug")
            return {features.PROBABILITIES_KEY: tf.zeros([tf.size(description), 4])}

    module = Failing()
    tf.saved_model.save(
        module, str(version_dir), signatures={features.SERVING_DEFAULT: module.serve}
    )


def unseen_rows(trained_on: int) -> list[tuple[str, str, str]]:
    """(title, description, label name) of the sample rows after the first `trained_on`, the
    rows a run on sample_lines(trained_on) did not train on."""
    return [
        (title, description, features.LABEL_NAMES[int(label) - 1])
        for label, title, description in csv.reader(
            line.decode() for line in sample_lines(3000)[trained_on:]
        )
    ]


def replay_requests(logs_dir, version: int, rows) -> None:
    """One window of request logs: `rows` written by the server's RequestLog as answered by
    `version` (with their labels as a right model would answer)."""
    log = RequestLog(str(logs_dir), sample_rate=1.0)
    served = Version("agnews", version, "", AVAILABLE)
    for title, description, label in rows:
        log.maybe_log(
            served,
            {features.TITLE_KEY: [title], features.DESCRIPTION_KEY: [description]},
            {features.LABEL_NAME_KEY: np.array([label.encode()], dtype=object)},
        )
    log.close()
