"""`agnews serve`'s REST API: real HTTP requests to a server on 127.0.0.1, in TF Serving's
format."""

import asyncio
import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from agnews.serving.batcher import Batcher, run_signature
from agnews.serving.server import ServeOptions, running_in_thread
from agnews.versions import load_warm
from components import features
from tests.helpers.serving import ROW, call, copy_served_model, newest, push_copy, state, wait_for


def serve_copy(first_run, tmp_path, batching: bool):
    """A server on free ports over a copy of the pushed model directory; batching gathers
    requests for 50 ms, so that concurrent test requests share calls."""
    model_dir = copy_served_model(first_run, tmp_path)
    options = ServeOptions(
        model_base_path=str(model_dir),
        rest_port=0,
        grpc_port=0,
        max_body_bytes=4096,
        max_batch=8,
        batching=batching,
        batch_max_rows=64,
        batch_timeout_ms=50,
        file_system_poll_wait_s=0.2,
    )
    with running_in_thread(options) as server:
        yield f"http://127.0.0.1:{server.rest_port}", model_dir


@pytest.fixture(scope="module", params=["one call per request", "batching"])
def served(first_run, tmp_path_factory, request):
    """One server per module and batching mode, for the tests that change nothing on disk."""
    yield from serve_copy(first_run, tmp_path_factory.mktemp("served"), request.param == "batching")


@pytest.fixture
def served_alone(first_run, tmp_path):
    """A server of its own, for a test that pushes versions."""
    yield from serve_copy(first_run, tmp_path, batching=True)


def assert_prediction(row):
    assert set(row) == {features.PROBABILITIES_KEY, features.CLASS_ID_KEY, features.LABEL_NAME_KEY}
    assert abs(sum(row[features.PROBABILITIES_KEY]) - 1) < 1e-4
    assert row[features.LABEL_NAME_KEY] == features.LABEL_NAMES[row[features.CLASS_ID_KEY]]


def test_status_and_row_and_columnar_predictions(served):
    url, model_dir = served
    version = newest(model_dir)
    status, body = call(f"{url}/v1/models/agnews")
    assert status == 200
    assert body["model_version_status"] == [
        {
            "version": version,
            "state": "AVAILABLE",
            "status": {"error_code": "OK", "error_message": ""},
        }
    ]

    status, body = call(f"{url}/v1/models/agnews:predict", {"instances": [ROW, ROW]})
    assert status == 200 and len(body["predictions"]) == 2
    assert_prediction(body["predictions"][0])
    assert body["predictions"][0] == body["predictions"][1]

    status, columnar = call(
        f"{url}/v1/models/agnews/versions/{version}:predict",
        {"inputs": {"title": [ROW["title"]], "description": [ROW["description"]]}},
    )
    assert status == 200
    assert columnar["outputs"][features.LABEL_NAME_KEY] == [
        body["predictions"][0][features.LABEL_NAME_KEY]
    ]
    assert len(columnar["outputs"][features.PROBABILITIES_KEY][0]) == features.NUM_CLASSES


def test_metadata_lists_the_signatures(served):
    url, model_dir = served
    status, body = call(f"{url}/v1/models/agnews/metadata")
    assert status == 200 and body["model_spec"] == {"name": "agnews", "version": newest(model_dir)}
    inputs = body["metadata"]["signature_def"]["signature_def"][features.SERVING_DEFAULT]["inputs"]
    assert set(inputs) == set(features.TEXT_KEYS)


@pytest.mark.parametrize(
    "path, body, status, fragment",
    [
        ("/v1/models/agnews:predict", b"{not json", 400, "JSON Parse error"),
        (
            "/v1/models/agnews:predict",
            {"instances": [{"title": "only a title"}]},
            400,
            "does not have named input: description",
        ),
        (
            "/v1/models/agnews:predict",
            {"instances": [{"title": 5, "description": ""}]},
            400,
            "must be strings",
        ),
        ("/v1/models/agnews:predict", {"instances": []}, 400, "non-empty"),
        (
            "/v1/models/agnews:predict",
            {"inputs": {"title": [], "description": []}},
            400,
            "empty batch",
        ),
        (
            "/v1/models/agnews:predict",
            {"inputs": {"title": ["only a title"]}},
            400,
            "input size does not match signature: 1!=2",
        ),
        (
            "/v1/models/agnews:predict",
            {"inputs": {**{key: [value] for key, value in ROW.items()}, "body": ["x"]}},
            400,
            "input size does not match signature: 3!=2",
        ),
        ("/v1/models/agnews:predict", {"instances": [ROW] * 9}, 400, "limit of 8"),
        (
            "/v1/models/agnews:predict",
            {"instances": [{"title": "x" * 5000, "description": ""}]},
            400,
            "larger than 4096",
        ),
        ("/v1/models/agnews:predict", {"rows": [ROW]}, 400, "Missing 'inputs' or 'instances'"),
        ("/v1/models/agnews:predict", {"instances": [ROW], "signature_name": "nope"}, 400, "nope"),
        ("/v1/models/agnews:predict", None, 400, "must be POST"),
        ("/v1/models/other:predict", {"instances": [ROW]}, 404, "Servable not found"),
        # An unknown model or version is NOT_FOUND before its inputs are looked at (TF Serving).
        ("/v1/models/other:predict", {"instances": [{"title": "x"}]}, 404, "Latest(other)"),
        ("/v1/models/other:predict", {"rows": []}, 404, "Latest(other)"),
        ("/v1/models/agnews/versions/1:predict", {"instances": [ROW] * 9}, 404, "(agnews, 1)"),
        ("/v1/models/agnews/versions/1:predict", {"instances": [ROW]}, 404, "Specific(agnews, 1)"),
        ("/v1/models/agnews/versions/abc", None, 404, "Servable not found"),
        ("/v1/models/agnews/versions/1", None, 404, "Could not find version 1 of model agnews"),
        (
            "/v1/models/agnews/labels/stable:predict",
            {"instances": [ROW]},
            400,
            "Unrecognized servable version label: stable",
        ),
        ("/v2/anything", None, 404, "Servable not found"),
    ],
)
def test_bad_requests_get_tf_serving_errors(served, path, body, status, fragment):
    url, _ = served
    got_status, got = call(url + path, body)
    assert got_status == status
    assert set(got) == {"error"} and fragment in got["error"]


def test_a_chunked_body_is_refused_once_it_passes_the_limit(served):
    """The 400 comes while the body is still being sent: the server never reads it whole."""
    url, _ = served
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
        client.sendall(
            b"POST /v1/models/agnews:predict HTTP/1.1\r\nHost: x\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"x" * 1000
        for _ in range(5):  # 5,000 bytes of a body that never ends
            client.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        answer = client.recv(65536)
    assert answer.startswith(b"HTTP/1.1 400")
    assert b"larger than 4096" in answer


def test_concurrent_requests_from_several_threads(served):
    url, _ = served
    rows = [{"title": f"Headline number {i}", "description": "text"} for i in range(6)]

    def ask(i):
        return call(f"{url}/v1/models/agnews:predict", {"instances": [rows[i % 6]]})

    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(ask, range(24)))
    assert all(status == 200 for status, _ in answers)
    for i, (_, body) in enumerate(answers):
        # Same input, same answer, whichever thread asked. With batching, a row's float sums
        # depend on the rows it shares a call with (last digits only): probabilities to 1e-6.
        (answer,), (first,) = body["predictions"], answers[i % 6][1]["predictions"]
        assert answer[features.LABEL_NAME_KEY] == first[features.LABEL_NAME_KEY]
        assert answer[features.CLASS_ID_KEY] == first[features.CLASS_ID_KEY]
        np.testing.assert_allclose(
            answer[features.PROBABILITIES_KEY], first[features.PROBABILITIES_KEY], atol=1e-6
        )


def test_a_newly_pushed_version_takes_over_and_the_old_one_is_unloaded(served_alone):
    url, model_dir = served_alone
    old = newest(model_dir)
    new = str(int(old) + 1)
    _, before = call(f"{url}/v1/models/agnews:predict", {"instances": [ROW]})
    push_copy(model_dir, int(new))
    wait_for(lambda: state(url, new) == "AVAILABLE")
    status, after = call(f"{url}/v1/models/agnews:predict", {"instances": [ROW]})
    assert status == 200 and after["predictions"] == before["predictions"]  # same weights
    assert (before["model_spec"]["version"], after["model_spec"]["version"]) == (old, new)
    wait_for(lambda: state(url, old) == "END")
    status, body = call(f"{url}/v1/models/agnews")
    assert [(v["version"], v["state"]) for v in body["model_version_status"]] == [
        (new, "AVAILABLE"),
        (old, "END"),
    ]
    status, body = call(f"{url}/v1/models/agnews/versions/{old}:predict", {"instances": [ROW]})
    assert status == 404 and f"Specific(agnews, {old})" in body["error"]


def _signature(first_run):
    root, _ = first_run
    return load_warm(str(max((root / "serving").iterdir(), key=lambda p: int(p.name)))).signatures[
        features.SERVING_DEFAULT
    ]


def _run_concurrently(batcher, signature, requests):
    async def gather():
        return await asyncio.gather(
            *(batcher.run(signature, columns) for columns in requests), return_exceptions=True
        )

    return asyncio.run(gather())


def _counting(signature):
    """The signature, and the list of row counts it records per call."""
    calls = []

    def counted(**inputs):
        calls.append(len(inputs[features.TITLE_KEY]))
        return signature(**inputs)

    return counted, calls


def test_concurrent_calls_share_one_signature_call_and_get_their_own_rows(first_run):
    signature = _signature(first_run)
    counted, calls = _counting(signature)

    requests = [
        {"title": [f"Headline {i}".encode()] * (1 + i % 3), "description": [b"text"] * (1 + i % 3)}
        for i in range(8)
    ]
    batched = _run_concurrently(Batcher(max_rows=64, timeout_s=0.5), counted, requests)
    assert sum(calls) == sum(len(r["title"]) for r in requests) and len(calls) < len(requests)
    for columns, answer in zip(requests, batched, strict=True):
        alone = run_signature(signature, columns)
        np.testing.assert_array_equal(
            answer[features.LABEL_NAME_KEY], alone[features.LABEL_NAME_KEY]
        )
        np.testing.assert_allclose(
            answer[features.PROBABILITIES_KEY], alone[features.PROBABILITIES_KEY], atol=1e-5
        )


def test_the_batch_cap_holds_and_a_larger_request_is_split(first_run):
    """63 waiting rows plus a 130-row request never make a call of more than 64 rows."""
    signature = _signature(first_run)
    counted, calls = _counting(signature)

    requests = [{"title": [f"Small {i}".encode()] * 9, "description": [b""] * 9} for i in range(7)]
    requests.append(
        {"title": [f"Large {i}".encode() for i in range(130)], "description": [b""] * 130}
    )
    batched = _run_concurrently(Batcher(max_rows=64, timeout_s=0.5), counted, requests)
    assert max(calls) <= 64 and sum(calls) == 63 + 130
    large = batched[-1]
    assert large[features.PROBABILITIES_KEY].shape == (130, features.NUM_CLASSES)
    np.testing.assert_allclose(
        large[features.PROBABILITIES_KEY],
        run_signature(signature, requests[-1])[features.PROBABILITIES_KEY],
        atol=1e-5,
    )


def test_a_failing_request_in_a_merged_call_fails_alone(first_run):
    signature = _signature(first_run)

    def rejects_poison(
        **inputs,
    ):  # the real signature, failing on one title as a broken input would
        if b"poison" in inputs[features.TITLE_KEY].numpy():
            raise ValueError("cannot score poison")
        return signature(**inputs)

    titles = [b"Oil prices rise", b"poison", b"Mets win", b"Chip sales climb"]
    answers = _run_concurrently(
        Batcher(max_rows=64, timeout_s=0.5),
        rejects_poison,
        [{"title": [t], "description": [b""]} for t in titles],
    )
    assert isinstance(answers[1], ValueError) and "poison" in str(answers[1])
    for answer in answers[:1] + answers[2:]:
        assert answer[features.LABEL_NAME_KEY][0].decode() in features.LABEL_NAMES


def test_a_bad_request_in_a_batch_fails_alone(served):
    url, _ = served
    lone_surrogate = b'{"instances": [{"title": "\\ud800", "description": ""}]}'

    def ask(i):
        return call(
            f"{url}/v1/models/agnews:predict",
            lone_surrogate if i == 3 else {"instances": [{**ROW, "title": f"Headline {i}"}]},
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(ask, range(8)))
    assert answers[3][0] == 400 and "not valid Unicode" in answers[3][1]["error"]
    for i, (status, body) in enumerate(answers):
        if i != 3:
            assert status == 200
            assert_prediction(body["predictions"][0])


THREAD_POOLS_PROBE = """
import json
import components
import tensorflow as tf
from agnews.serving import server
server.use_tensorflow_threads(1, 2)
sized = [tf.config.threading.get_intra_op_parallelism_threads(),
         tf.config.threading.get_inter_op_parallelism_threads()]
tf.constant(1.0) + 1.0  # TensorFlow now runs: its pools are fixed
try:
    server.use_tensorflow_threads(2, 2)
    late = "accepted"
except ValueError as error:
    late = str(error)
print(json.dumps([sized, late]))
"""


def test_tensorflows_thread_pools_are_sized_before_its_first_op_and_never_after():
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", THREAD_POOLS_PROBE], capture_output=True, text=True, check=True
    )
    sized, late = json.loads(done.stdout.strip().splitlines()[-1])
    assert sized == [1, 2]
    assert "already started TensorFlow" in late


def test_a_loaded_version_is_frozen_out_of_the_garbage_collectors_walks(first_run, tmp_path):
    import gc

    from agnews.serving import model_config
    from agnews.serving.metrics import Metrics
    from agnews.serving.store import ModelStore

    store = ModelStore(
        model_config.from_flags("agnews", str(copy_served_model(first_run, tmp_path))), Metrics()
    )
    store.start()
    try:
        model = store.serving("agnews").loaded.model
        assert gc.is_tracked(model)
        assert all(tracked is not model for tracked in gc.get_objects())  # frozen: in no generation
    finally:
        store.stop()


def test_an_idle_batcher_starts_a_lone_request_at_once_and_waits_only_while_a_batch_runs(first_run):
    """With a 2 s timeout: a request to an idle batcher is answered well within it; requests
    arriving while a 1 s batch runs wait for company, and go together as soon as it ends."""
    signature = _signature(first_run)
    counted, calls = _counting(signature)
    batcher = Batcher(max_rows=64, timeout_s=2.0, threads=2)

    def slow_first(**inputs):
        if inputs[features.TITLE_KEY].numpy()[0] == b"First":
            time.sleep(1.0)
        return counted(**inputs)

    def row(title: bytes) -> dict:
        return {"title": [title], "description": [b""]}

    async def scenario():
        started = time.perf_counter()
        lone = await batcher.run(slow_first, row(b"Alone"))
        lone_seconds = time.perf_counter() - started
        first = asyncio.ensure_future(batcher.run(slow_first, row(b"First")))
        await asyncio.sleep(0.1)  # First's call is running
        started = time.perf_counter()
        early = asyncio.ensure_future(batcher.run(slow_first, row(b"Early")))
        await asyncio.sleep(0.2)
        later = asyncio.ensure_future(batcher.run(slow_first, row(b"Later")))
        answers = [lone, await first, await early, await later]
        return lone_seconds, time.perf_counter() - started, answers

    lone_seconds, gathered_seconds, answers = asyncio.run(scenario())
    assert all(
        answer[features.LABEL_NAME_KEY][0].decode() in features.LABEL_NAMES for answer in answers
    )
    assert lone_seconds < 1.0  # not held for the 2 s timeout
    assert calls == [1, 1, 2]  # Alone, First, then Early and Later in one call
    assert gathered_seconds < 1.8  # released when First's call ended, not at the 2 s deadline
