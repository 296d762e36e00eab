"""`agnews skew`: logged requests against the training statistics of the version that answered."""

import csv

from agnews import cli
from agnews.exit_codes import ExitCode
from agnews.serving.server import ServeOptions, running_in_thread
from components import features
from tests.helpers.data import sample_lines
from tests.helpers.serving import call, copy_served_model, newest


def _log_requests(first_run, tmp_path, rows) -> str:
    model_dir = copy_served_model(first_run, tmp_path)
    logs = tmp_path / "logs"
    options = ServeOptions(
        model_base_path=str(model_dir),
        rest_port=0,
        grpc_port=None,
        log_requests=str(logs),
        log_sample_rate=1.0,
    )
    with running_in_thread(options) as server:
        for start in range(0, len(rows), 8):
            status, _ = call(
                f"http://127.0.0.1:{server.rest_port}/v1/models/agnews:predict",
                {"instances": [{"title": t, "description": d} for t, d in rows[start : start + 8]]},
            )
            assert status == 200
    return str(logs)


def _distances(out: str) -> dict[str, float]:
    """feature -> L-infinity distance, from `agnews skew`'s table."""
    return {
        line.split()[0]: float(line.split()[1])
        for line in out.splitlines()
        if line.split() and line.split()[0] in features.TEXT_KEYS
    }


def test_skew_compares_logged_requests_with_the_served_runs_training_statistics(
    first_run, tmp_path, capsys
):
    root, _ = first_run
    training_like = [
        (row[1], row[2]) for row in csv.reader(line.decode() for line in sample_lines(40))
    ]
    constant = [("Breaking news", "The same text again.")] * 40

    assert (
        cli.main(
            [
                "skew",
                "--logs",
                _log_requests(first_run, tmp_path / "a", training_like),
                "--run-dir",
                str(root),
            ]
        )
        == ExitCode.OK
    )
    out = capsys.readouterr().out
    assert (
        f"agnews version {newest(root / 'serving')}: 40 logged rows vs training statistics" in out
    )
    like_training = _distances(out)

    assert (
        cli.main(
            [
                "skew",
                "--logs",
                _log_requests(first_run, tmp_path / "b", constant),
                "--run-dir",
                str(root),
            ]
        )
        == ExitCode.OK
    )
    skewed = _distances(capsys.readouterr().out)
    assert set(skewed) == set(like_training) == set(features.TEXT_KEYS)
    for feature in features.TEXT_KEYS:  # one repeated text is far from the training distribution
        assert skewed[feature] > like_training[feature]


def test_skew_without_logs_says_so(tmp_path, capsys):
    assert cli.main(["skew", "--logs", str(tmp_path)]) == ExitCode.STOPPED
    assert "no request logs" in capsys.readouterr().err
