"""The registry as an on-call engineer uses it: `agnews models` promotes and rolls back, and an
`agnews serve --from-registry` process follows each change without a restart; requests naming no
version go to stable, a share of them to canary; a canary that errors is taken out of traffic and
the registry records it. A real server process, real REST and gRPC clients on 127.0.0.1; the
first version is the first run's real push, later ones are copies (or a broken model) recorded as
Pusher records its pushes."""

import json
import shutil
import urllib.request

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families
from scipy import stats
from tensorflow_serving.apis import (
    prediction_service_pb2_grpc,
)

from agnews import cli
from agnews.exit_codes import ExitCode
from agnews.serving import model_config
from tests.helpers.metadata import record_push
from tests.helpers.serving import (
    call,
    copy_served_model,
    grpc_label_state,
    newest,
    predict_request,
    push_copy,
    save_failing_version,
    served_by,
    serving_registry,
    state,
    wait_for,
)

CANARY_PERCENT = 25
REQUESTS = 200


@pytest.fixture
def registry(first_run, tmp_path):
    """(model_dir, metadata_path, `agnews models` flags, first version): a copy of the first
    run's pushed model and store, its push registered as stable."""
    root, _ = first_run
    model_dir = copy_served_model(first_run, tmp_path)
    metadata_path = tmp_path / "metadata.sqlite"
    shutil.copy(root / "metadata.sqlite", metadata_path)
    flags = ["models", "--metadata-path", str(metadata_path), "--serving-dir", str(model_dir)]
    assert cli.main([*flags, "list"]) == ExitCode.OK
    return model_dir, metadata_path, flags, int(newest(model_dir))


def _push(registry, version: int, make=push_copy) -> None:
    """A later push: `make` writes the version, the registry takes it in (as canary)."""
    model_dir, metadata_path, flags, _ = registry
    make(model_dir, version)
    record_push(metadata_path, model_dir, version)
    assert cli.main([*flags, "list"]) == ExitCode.OK


def _listed(flags, capsys) -> dict[int, dict]:
    capsys.readouterr()
    assert cli.main([*flags, "list", "--json"]) == ExitCode.OK
    return {e["version"]: e for e in map(json.loads, capsys.readouterr().out.splitlines())}


def test_promote_and_rollback_reach_a_running_server_and_canary_takes_its_share(registry, capsys):
    _, _, flags, first = registry
    for version in (first + 1, first + 2):  # two later pushes: each canary in its turn
        _push(registry, version)
    canary = first + 2
    with serving_registry(*registry[:2], "--canary-percent", str(CANARY_PERCENT)) as (url, port, _):
        assert grpc_label_state(port, "stable") == (first, "AVAILABLE")
        assert grpc_label_state(port, "canary") == (canary, "AVAILABLE")
        labels = {"stable": str(first), "canary": str(canary)}
        assert call(f"{url}/v1/models/agnews")[1]["version_labels"] == labels

        # Requests naming no version: stable, and canary for its share (a binomial 99% interval).
        counts = served_by(url, REQUESTS)
        assert set(counts) == {first, canary}
        low, high = stats.binom.interval(0.99, REQUESTS, CANARY_PERCENT / 100)
        assert low <= counts[canary] <= high, counts

        assert cli.main([*flags, "promote", str(canary), "--to", "stable", "--reason", "ok"]) == 0
        wait_for(lambda: served_by(url, 20) == {canary: 20}, timeout=30)
        assert grpc_label_state(port, "stable") == (canary, "AVAILABLE")
        wait_for(lambda: state(url, first) == "END")  # no longer served: unloaded

        assert cli.main([*flags, "rollback", "--reason", "bad answers"]) == 0
        # The version rolled back to was unloaded: it loads again, then takes all traffic.
        wait_for(lambda: served_by(url, 20) == {first: 20}, timeout=120)
        assert grpc_label_state(port, "stable") == (first, "AVAILABLE")
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            assert stub.Predict(predict_request(), timeout=60).model_spec.version.value == first
    listed = _listed(flags, capsys)
    assert listed[first]["aliases"] == ["stable"] and listed[canary]["aliases"] == []
    history = [(c["action"], c["version"], c["reason"]) for c in listed[canary]["history"]]
    assert history[-2:] == [("promote", canary, "ok"), ("rollback", first, "bad answers")]


def test_a_canary_that_errors_is_taken_out_and_the_registry_records_it(registry, capsys):
    model_dir, _, flags, first = registry
    broken = first + 1
    _push(registry, broken, make=lambda d, v: save_failing_version(d / str(v)))
    window = 10
    serve_flags = ("--canary-percent", "50", "--canary-max-error-rate", "0.2")
    with serving_registry(*registry[:2], *serve_flags, "--canary-error-window", str(window)) as (
        url,
        _,
        server,
    ):
        counts = served_by(url, 100)
        # Each of the canary's calls failed until `window` of them had: then it was out.
        assert counts == {0: window, first: 100 - window}, counts
        wait_for(lambda: state(url, broken) == "END", timeout=60)  # unloaded after the rollback
        assert served_by(url, 20) == {first: 20}
        with urllib.request.urlopen(f"{url}/monitoring/prometheus/metrics", timeout=60) as answer:
            families = {f.name: f for f in text_string_to_metric_families(answer.read().decode())}
        calls = {
            (int(s.labels["version"]), s.labels["version_label"], s.labels["outcome"]): s.value
            for s in families["agnews_serving_model_calls"].samples
            if s.name.endswith("_total")
        }
        assert calls == {
            (broken, "canary", "FAILED"): window,
            (first, "stable", "OK"): 120 - window,
        }
    assert f"canary version {broken} of agnews taken out of traffic" in server.stderr.read()
    (config,) = model_config.read_config_file(model_config.registry_config_path(str(model_dir)))
    assert dict(config.labels) == {"stable": first}
    (taken_out,) = [c for c in _listed(flags, capsys)[broken]["history"] if c["version"] == broken][
        -1:
    ]
    assert taken_out["action"] == "auto_rollback" and "calls failed" in taken_out["reason"]


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--from-registry"], "no registry config"),
        (["--canary-percent", "120"], "within 0 and 100"),
        (["--canary-max-error-rate", "1.5"], "below 1"),
    ],
)
def test_serve_refuses_a_missing_registry_or_a_share_out_of_range_in_one_line(
    tmp_path, flags, message, capsys
):
    code = cli.main(["serve", "--model", str(tmp_path / "serving" / "agnews"), *flags])
    err = capsys.readouterr().err
    assert code == ExitCode.STOPPED and err.count("\n") == 1 and message in err
