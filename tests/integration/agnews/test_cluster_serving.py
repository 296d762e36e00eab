"""The model server on a host of its own (issue 26 item 4): `agnews serve` of the first run's
pushed model on host model-server, listening on every address at TF Serving's ports, answers
TF Serving's REST and gRPC clients on another host that call it by name, with the probabilities
`agnews predict` gives here."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from agnews import predict
from pipeline.config import PROJECT_DIR
from tests.helpers.cli import AGNEWS
from tests.helpers.hosts import hosts
from tests.helpers.serving import DESCRIPTIONS, TITLES, copy_served_model, newest

pytestmark = pytest.mark.cluster

REST_PORT, GRPC_PORT = 8501, 8500  # TF Serving's own

# What runs on the client host: one REST and one gRPC Predict of TITLES/DESCRIPTIONS by host
# name, printing each API's probabilities and the version that answered as JSON.
_CLIENT = r"""
import json, sys, urllib.request
import grpc, tensorflow as tf
from tensorflow_serving.apis import prediction_service_pb2_grpc
from components import features
from tests.helpers.serving import DESCRIPTIONS, TITLES, call, predict_request

server, rest_port, grpc_port = sys.argv[1], sys.argv[2], sys.argv[3]
instances = [{"title": t, "description": d} for t, d in zip(TITLES, DESCRIPTIONS)]
url = f"http://{server}:{rest_port}/v1/models/agnews:predict"
status, body = call(url, {"instances": instances})
assert status == 200, body
with grpc.insecure_channel(f"{server}:{grpc_port}") as channel:
    response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
        predict_request(), timeout=60
    )
print(json.dumps({
    "rest": [row[features.PROBABILITIES_KEY] for row in body["predictions"]],
    "grpc": tf.make_ndarray(response.outputs[features.PROBABILITIES_KEY]).tolist(),
    "grpc_version": response.model_spec.version.value,
}))
"""


def test_the_model_server_answers_rest_and_grpc_clients_on_another_host(first_run, tmp_path):
    model_dir = copy_served_model(first_run, tmp_path)
    with hosts(["model-server", "client"]) as made:
        server = made.popen(
            "model-server",
            [*AGNEWS, "serve", "--model", str(model_dir), "--host", "0.0.0.0",
             "--rest-port", str(REST_PORT), "--grpc-port", str(GRPC_PORT)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=PROJECT_DIR,
        )  # fmt: skip
        try:
            ready = server.stdout.readline()
            assert re.search(rf":{REST_PORT}/.* gRPC .*:{GRPC_PORT}", ready), ready + (
                server.stderr.read() if server.poll() is not None else ""
            )
            asked = made.run(
                "client",
                [sys.executable, "-c", _CLIENT, "model-server", str(REST_PORT), str(GRPC_PORT)],
                capture_output=True,
                text=True,
                timeout=300,
                cwd=PROJECT_DIR,
                env={**os.environ, "PYTHONPATH": str(PROJECT_DIR)},
            )
            assert asked.returncode == 0, asked.stderr[-3000:]
            # The server is not reachable where it is not: the client's own loopback.
            refused = made.run(
                "client",
                ["bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{REST_PORT}"],
                capture_output=True,
                timeout=60,
            )
        finally:
            server.terminate()
            server.wait(timeout=60)
    assert refused.returncode != 0
    answers = json.loads(asked.stdout.splitlines()[-1])
    assert str(answers["grpc_version"]) == newest(model_dir)
    here = predict.predict(str(model_dir / newest(model_dir)), TITLES, DESCRIPTIONS)
    expected = [list(row["probabilities"].values()) for row in here]
    np.testing.assert_allclose(answers["rest"], expected, atol=1e-5)
    np.testing.assert_allclose(answers["grpc"], expected, atol=1e-5)
