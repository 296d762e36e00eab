"""`agnews serve`: real HTTP requests to a server on 127.0.0.1, in TF Serving's REST format."""
import json
import shutil
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from components import features
from pipeline import serve


@pytest.fixture(params=["one call per request", "batching"])
def served(first_run, tmp_path, request):
    """A server on a free port over a copy of the pushed model directory, with and without
    batching (a 50 ms batch window, so that concurrent test requests share calls)."""
    root, _ = first_run
    model_dir = tmp_path / "serving"
    shutil.copytree(root / "serving", model_dir)
    batcher = serve.Batcher(max_rows=64, timeout_s=0.05) if request.param == "batching" else None
    server = serve.make_serving_server(str(model_dir), port=0, max_body_bytes=4096, max_batch=8,
                                       batcher=batcher)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", model_dir
    server.shutdown()
    thread.join(timeout=10)


def _call(url, body=None, method=None):
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method or ("POST" if data is not None else "GET"))
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


ROW = {"title": "Stocks slide as oil climbs", "description": "Wall Street fell."}


def _assert_prediction(row):
    assert set(row) == {features.PROBABILITIES_KEY, features.CLASS_ID_KEY, features.LABEL_NAME_KEY}
    assert abs(sum(row[features.PROBABILITIES_KEY]) - 1) < 1e-4
    assert row[features.LABEL_NAME_KEY] == features.LABEL_NAMES[row[features.CLASS_ID_KEY]]


def test_status_and_row_and_columnar_predictions(served):
    url, model_dir = served
    version = str(max(int(p.name) for p in model_dir.iterdir()))
    status, body = _call(f"{url}/v1/models/agnews")
    assert status == 200
    assert body["model_version_status"][0]["version"] == version
    assert body["model_version_status"][0]["state"] == "AVAILABLE"

    status, body = _call(f"{url}/v1/models/agnews:predict", {"instances": [ROW, ROW]})
    assert status == 200 and len(body["predictions"]) == 2
    _assert_prediction(body["predictions"][0])
    assert body["predictions"][0] == body["predictions"][1]

    status, columnar = _call(f"{url}/v1/models/agnews/versions/{version}:predict",
                             {"inputs": {"title": [ROW["title"]], "description": [ROW["description"]]}})
    assert status == 200
    assert columnar["outputs"][features.LABEL_NAME_KEY] == [body["predictions"][0][features.LABEL_NAME_KEY]]
    assert len(columnar["outputs"][features.PROBABILITIES_KEY][0]) == features.NUM_CLASSES


@pytest.mark.parametrize("path, body, status, fragment", [
    ("/v1/models/agnews:predict", b"{not json", 400, "JSON Parse error"),
    ("/v1/models/agnews:predict", {"instances": [{"title": "only a title"}]}, 400, "does not have named input: description"),
    ("/v1/models/agnews:predict", {"instances": [{"title": 5, "description": ""}]}, 400, "must be strings"),
    ("/v1/models/agnews:predict", {"instances": []}, 400, "non-empty"),
    ("/v1/models/agnews:predict", {"inputs": {"title": [], "description": []}}, 400, "empty batch"),
    ("/v1/models/agnews:predict", {"instances": [ROW] * 9}, 400, "limit of 8"),
    ("/v1/models/agnews:predict", {"instances": [{"title": "x" * 5000, "description": ""}]}, 400, "larger than 4096"),
    ("/v1/models/agnews:predict", {"rows": [ROW]}, 400, "Missing 'inputs' or 'instances'"),
    ("/v1/models/agnews:predict", {"instances": [ROW], "signature_name": "nope"}, 400, "nope"),
    ("/v1/models/other:predict", {"instances": [ROW]}, 404, "Servable not found"),
    ("/v1/models/agnews/versions/1:predict", {"instances": [ROW]}, 404, "Specific(agnews, 1)"),
    ("/v1/models/agnews/versions/abc", None, 404, "Servable not found"),
])
def test_bad_requests_get_tf_serving_errors(served, path, body, status, fragment):
    url, _ = served
    got_status, got = _call(url + path, body)
    assert got_status == status
    assert set(got) == {"error"} and fragment in got["error"]


def test_concurrent_requests_from_several_threads(served):
    url, _ = served
    rows = [{"title": f"Headline number {i}", "description": "text"} for i in range(6)]

    def ask(i):
        return _call(f"{url}/v1/models/agnews:predict", {"instances": [rows[i % 6]]})

    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(ask, range(24)))
    assert all(status == 200 for status, _ in answers)
    for i, (_, body) in enumerate(answers):
        assert body == answers[i % 6][1]  # same input, same answer, whichever thread asked


def test_a_newly_pushed_version_is_served_without_restart(served):
    url, model_dir = served
    old = max(model_dir.iterdir(), key=lambda p: int(p.name))
    _, before = _call(f"{url}/v1/models/agnews:predict", {"instances": [ROW]})
    shutil.copytree(old, model_dir / str(int(old.name) + 1))
    status, body = _call(f"{url}/v1/models/agnews")
    assert status == 200 and body["model_version_status"][0]["version"] == str(int(old.name) + 1)
    status, after = _call(f"{url}/v1/models/agnews:predict", {"instances": [ROW]})
    assert status == 200 and after == before  # same weights, now loaded from the new version
    status, _ = _call(f"{url}/v1/models/agnews/versions/{old.name}:predict", {"instances": [ROW]})
    assert status == 200


def test_concurrent_calls_share_one_signature_call_and_get_their_own_rows(first_run):
    root, _ = first_run
    version = max((root / "serving").iterdir(), key=lambda p: int(p.name))
    signature = serve.load_warm(str(version)).signatures[features.SERVING_DEFAULT]
    calls = []

    def counted(**inputs):
        calls.append(len(inputs[features.TITLE_KEY]))
        return signature(**inputs)

    batcher = serve.Batcher(max_rows=64, timeout_s=0.5)
    requests = [{"title": [f"Headline {i}"] * (1 + i % 3), "description": ["text"] * (1 + i % 3)}
                for i in range(8)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        batched = list(pool.map(lambda columns: batcher.run(counted, columns), requests))
    assert sum(calls) == sum(len(r["title"]) for r in requests) and len(calls) < len(requests)
    for columns, answer in zip(requests, batched):
        alone = serve.run_signature(signature, columns)
        assert answer[features.LABEL_NAME_KEY] == alone[features.LABEL_NAME_KEY]
        np.testing.assert_allclose(answer[features.PROBABILITIES_KEY], alone[features.PROBABILITIES_KEY],
                                   atol=1e-5)


def test_a_failing_request_in_a_merged_call_fails_alone(first_run):
    root, _ = first_run
    version = max((root / "serving").iterdir(), key=lambda p: int(p.name))
    signature = serve.load_warm(str(version)).signatures[features.SERVING_DEFAULT]

    def rejects_poison(**inputs):  # the real signature, failing on one title as a broken input would
        if b"poison" in inputs[features.TITLE_KEY].numpy():
            raise ValueError("cannot score poison")
        return signature(**inputs)

    batcher = serve.Batcher(max_rows=64, timeout_s=0.5)
    titles = ["Oil prices rise", "poison", "Mets win", "Chip sales climb"]
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(batcher.run, rejects_poison, {"title": [t], "description": [""]})
                   for t in titles]
    with pytest.raises(ValueError, match="poison"):
        futures[1].result()
    for future in futures[:1] + futures[2:]:
        assert future.result()[features.LABEL_NAME_KEY][0] in features.LABEL_NAMES


def test_a_bad_request_in_a_batch_fails_alone(served):
    url, _ = served
    lone_surrogate = b'{"instances": [{"title": "\\ud800", "description": ""}]}'

    def ask(i):
        return _call(f"{url}/v1/models/agnews:predict",
                     lone_surrogate if i == 3 else {"instances": [{**ROW, "title": f"Headline {i}"}]})

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(ask, range(8)))
    assert answers[3][0] == 400 and "not valid Unicode" in answers[3][1]["error"]
    for i, (status, body) in enumerate(answers):
        if i != 3:
            assert status == 200
            _assert_prediction(body["predictions"][0])
