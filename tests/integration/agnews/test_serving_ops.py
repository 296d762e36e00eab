"""What an operator relies on: metrics, versions that fail to load, the model config file and its
reload, request logs, and SIGTERM under load. Real servers on 127.0.0.1, real clients."""

import http.client
import json
import os
import re
import signal
import threading
import time
import urllib.request

import grpc
import pytest
import tensorflow as tf
from prometheus_client.parser import text_string_to_metric_families
from tensorflow_serving.apis import prediction_service_pb2_grpc

from agnews import predict, versions
from agnews.serving.request_log import read_logs
from agnews.serving.server import ServeOptions, running_in_thread
from components import features, settings
from tests.helpers.serving import (
    ROW,
    TITLES,
    call,
    copy_served_model,
    newest,
    predict_request,
    push_copy,
    serving_process,
    state,
    wait_for,
)


def test_metrics_parse_and_use_tf_serving_names(first_run, tmp_path):
    model_dir = copy_served_model(first_run, tmp_path)
    options = ServeOptions(model_base_path=str(model_dir), rest_port=0, grpc_port=0)
    with running_in_thread(options) as server:
        url = f"http://127.0.0.1:{server.rest_port}"
        assert call(f"{url}/v1/models/agnews:predict", {"instances": [ROW, ROW]})[0] == 200
        assert call(f"{url}/v1/models/agnews:predict", b"{")[0] == 400
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
                predict_request(), timeout=60
            )
        with urllib.request.urlopen(f"{url}/monitoring/prometheus/metrics", timeout=60) as response:
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = response.read().decode()

    # TF Serving's own exposition: the counter without a _total suffix, so its dashboards work.
    assert re.search(
        r'^:tensorflow:serving:request_count\{model_name="agnews",status="OK"\} 2\.0$', text, re.M
    )
    assert re.search(
        r'^:tensorflow:serving:request_count\{model_name="agnews",'
        r'status="INVALID_ARGUMENT"\} 1\.0$',
        text,
        re.M,
    )
    families = {family.name: family for family in text_string_to_metric_families(text)}
    latency = families[":tensorflow:serving:request_latency"]
    assert latency.type == "histogram"
    counts = {
        (s.labels["API"], s.labels["entrypoint"]): s.value
        for s in latency.samples
        if s.name.endswith("_count")
    }
    assert counts == {("Predict", "REST"): 2, ("Predict", "GRPC"): 1}
    by_version = {
        (s.labels["entrypoint"], s.labels["version"], s.labels["status"]): s.value
        for s in families["agnews_serving_requests"].samples
    }
    assert by_version[("GRPC", newest(model_dir), "OK")] == 1
    batch_rows = [
        s.value for s in families["agnews_serving_batch_size"].samples if s.name.endswith("_sum")
    ]
    assert sum(batch_rows) == 2 + len(predict_request().inputs[features.TITLE_KEY].string_val)
    assert any(s.value > 0 for s in families[":tensorflow:cc:saved_model:load_latency"].samples)
    warmups = [
        s
        for s in families[":tensorflow:serving:model_warmup_latency"].samples
        if s.name.endswith("_count")
    ]
    assert warmups and warmups[0].labels["status"] == "OK"


def test_a_version_that_fails_to_load_is_reported_and_never_replaces_the_working_one(
    first_run, tmp_path
):
    model_dir = copy_served_model(first_run, tmp_path)
    good = newest(model_dir)
    broken = str(int(good) + 1)
    options = ServeOptions(
        model_base_path=str(model_dir), rest_port=0, grpc_port=None, file_system_poll_wait_s=0.2
    )
    with running_in_thread(options) as server:
        url = f"http://127.0.0.1:{server.rest_port}"
        staging = tmp_path / "broken"
        staging.mkdir()
        (staging / "saved_model.pb").write_bytes(b"not a SavedModel")
        staging.rename(model_dir / broken)
        wait_for(lambda: state(url, broken) == "END")
        _, body = call(f"{url}/v1/models/agnews")
        assert [
            (v["version"], v["state"], v["status"]["error_code"])
            for v in body["model_version_status"]
        ] == [(broken, "END", "UNKNOWN"), (good, "AVAILABLE", "OK")]
        assert body["model_version_status"][0]["status"]["error_message"]
        for _ in range(3):  # served by the working version; no request retries the load
            status, answer = call(f"{url}/v1/models/agnews:predict", {"instances": [ROW]})
            assert (
                status == 200
                and answer["predictions"][0][features.LABEL_NAME_KEY] in features.LABEL_NAMES
            )
        failures = [
            s
            for family in text_string_to_metric_families(server.metrics.exposition().decode())
            if family.name == ":tensorflow:cc:saved_model:load_attempt_count"
            for s in family.samples
            if s.labels["status"] == "fail"
        ]
        assert [(s.labels["model_path"], s.value) for s in failures] == [
            (str(model_dir / broken), 1.0)
        ]


def _write_config(path, models):
    entries = []
    for name, base_path, policy, labels in models:
        label_text = "".join(
            f' version_labels {{ key: "{k}" value: {v} }}' for k, v in labels.items()
        )
        entries.append(
            f'config {{ name: "{name}" base_path: "{base_path}" model_platform: "tensorflow" '
            f"model_version_policy {{ {policy} }}{label_text} }}"
        )
    staging = path.with_suffix(".tmp")
    staging.write_text("model_config_list {\n  " + "\n  ".join(entries) + "\n}\n")
    staging.rename(path)


def test_model_config_file_policies_labels_and_a_reload_that_adds_a_model(first_run, tmp_path):
    model_dir = copy_served_model(first_run, tmp_path)
    stable = int(newest(model_dir))
    canary = stable + 1
    push_copy(model_dir, canary)
    baseline = settings.BASELINE_SERVING_MODEL_NAME
    baseline_dir = first_run[0] / baseline  # what the first run pushed with --push-baseline
    config_file = tmp_path / "models.config"
    _write_config(
        config_file, [("agnews", model_dir, "all {}", {"stable": stable, "canary": canary})]
    )
    options = ServeOptions(
        model_config_file=str(config_file),
        model_config_file_poll_wait_s=0.5,
        rest_port=0,
        grpc_port=0,
    )
    with running_in_thread(options) as server:
        url = f"http://127.0.0.1:{server.rest_port}"
        _, body = call(f"{url}/v1/models/agnews")
        assert [(v["version"], v["state"]) for v in body["model_version_status"]] == [
            (str(canary), "AVAILABLE"),
            (str(stable), "AVAILABLE"),
        ]
        status, by_label = call(
            f"{url}/v1/models/agnews/labels/stable:predict", {"instances": [ROW]}
        )
        assert status == 200
        assert (
            by_label
            == call(f"{url}/v1/models/agnews/versions/{stable}:predict", {"instances": [ROW]})[1]
        )
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            for label, version in (("stable", stable), ("canary", canary)):
                request = predict_request()
                request.model_spec.version_label = label
                assert stub.Predict(request, timeout=60).model_spec.version.value == version
        assert call(f"{url}/v1/models/{baseline}")[0] == 404

        # The linear baseline that `agnews run --push-baseline` pushed beside the model.
        _write_config(
            config_file,
            [
                ("agnews", model_dir, f"specific {{ versions: {stable} }}", {"stable": stable}),
                (baseline, baseline_dir, "latest { num_versions: 1 }", {}),
            ],
        )
        wait_for(
            lambda: call(f"{url}/v1/models/{baseline}")[0] == 200 and state(url, canary) == "END",
            timeout=120,
        )
        wait_for(
            lambda: (
                call(f"{url}/v1/models/{baseline}")[1]["model_version_status"][0]["state"]
                == "AVAILABLE"
            )
        )
        status, answer = call(f"{url}/v1/models/{baseline}:predict", {"instances": [ROW]})
        assert status == 200 and answer != by_label  # another model than the BiLSTM
        (expected,) = predict.predict(
            versions.resolve_version_dir(str(baseline_dir)), [ROW["title"]], [ROW["description"]]
        )
        (served,) = answer["predictions"]
        assert served[features.LABEL_NAME_KEY] == expected["label"]
        assert served[features.PROBABILITIES_KEY] == pytest.approx(
            list(expected["probabilities"].values()), abs=1e-5
        )
        assert call(f"{url}/v1/models/agnews/labels/canary:predict", {"instances": [ROW]})[0] == 400


def test_sampled_request_logs_read_back_as_prediction_logs(first_run, tmp_path):
    model_dir = copy_served_model(first_run, tmp_path)
    logs = tmp_path / "logs"
    options = ServeOptions(
        model_base_path=str(model_dir),
        rest_port=0,
        grpc_port=0,
        log_requests=str(logs),
        log_sample_rate=1.0,
    )
    titles = [f"Headline {i}" for i in range(3)]
    with running_in_thread(options) as server:
        for title in titles:
            call(
                f"http://127.0.0.1:{server.rest_port}/v1/models/agnews:predict",
                {"instances": [{"title": title, "description": "text"}]},
            )
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
                predict_request(), timeout=60
            )
        assert read_logs(str(logs)) == []  # the open file is not visible under its final name
    assert not [name for name in os.listdir(logs) if name.endswith(".tmp")]
    records = read_logs(str(logs))
    assert len(records) == 4
    logged_titles = [
        title.decode()
        for log in records
        for title in tf.make_ndarray(log.predict_log.request.inputs[features.TITLE_KEY])
    ]
    assert logged_titles == titles + TITLES
    for log in records:
        assert log.predict_log.request.model_spec.name == "agnews"
        assert str(log.predict_log.response.model_spec.version.value) == newest(model_dir)
        probabilities = tf.make_ndarray(
            log.predict_log.response.outputs[features.PROBABILITIES_KEY]
        )
        assert probabilities.shape[1] == features.NUM_CLASSES


def test_sigterm_answers_every_request_in_flight_then_exits_0(first_run, tmp_path):
    """Requests sent before SIGTERM wait in a 1 s batch window when it arrives: every one of them
    is answered, new connections are refused, and the process exits 0."""
    model_dir = copy_served_model(first_run, tmp_path)
    with serving_process("--model", str(model_dir), "--batch-timeout-ms", "1000") as (
        url,
        grpc_port,
        server,
    ):
        rest_port = int(url.rsplit(":", 1)[1])
        sent, answers = threading.Barrier(17), []

        def ask(i):
            connection = http.client.HTTPConnection("127.0.0.1", rest_port, timeout=120)
            connection.request(
                "POST",
                "/v1/models/agnews:predict",
                json.dumps({"instances": [{**ROW, "title": f"Headline {i}"}]}),
            )
            sent.wait()
            response = connection.getresponse()
            answers.append((response.status, json.loads(response.read())))

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(16)]
        for thread in threads:
            thread.start()
        channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
        in_flight_grpc = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict.future(
            predict_request(), timeout=120
        )
        sent.wait()
        time.sleep(0.2)  # the gRPC call on its way too, well within the batch window
        server.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join()
        assert len(answers) == 16 and all(status == 200 for status, _ in answers)
        assert all(
            body["predictions"][0][features.LABEL_NAME_KEY] in features.LABEL_NAMES
            for _, body in answers
        )
        assert len(tf.make_ndarray(in_flight_grpc.result().outputs[features.LABEL_NAME_KEY])) == 3
        channel.close()
        assert server.wait(timeout=120) == 0
        with pytest.raises(ConnectionRefusedError):
            http.client.HTTPConnection("127.0.0.1", rest_port, timeout=10).connect()
        assert "Traceback" not in server.stderr.read()
