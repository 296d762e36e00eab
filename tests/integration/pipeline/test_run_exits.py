"""`agnews run` as a user's shell sees it: real processes, exit codes, no tracebacks, and runs
that survive a kill -9 or a second run started on the same store."""

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from ml_metadata.proto import metadata_store_pb2

from agnews.exit_codes import ExitCode
from pipeline import local_runner, metadata
from tests.helpers.cli import AGNEWS, run_args
from tests.helpers.data import sample_lines

# Transform is not among them: its analyzer cache input is the killed run's Transform output.
UPSTREAM = ("FileBasedExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator")


def _agnews_run(root: Path, *extra: str) -> list[str]:
    return [*AGNEWS, *run_args(root, *extra)]


def _start(command: list[str], log: Path) -> subprocess.Popen:
    # SIGINT handled as in a terminal's foreground job, even when pytest itself was started in
    # the background (`cmd &`), where the shell ignores SIGINT and children inherit that.
    return subprocess.Popen(
        command,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def _finished(command: list[str], timeout: float = 900) -> tuple[int, str]:
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    return done.returncode, done.stdout + done.stderr


def _assert_clean(output: str) -> None:
    assert "Traceback" not in output and "Exception ignored" not in output, output[-3000:]


def _data(root: Path, lines: list[bytes]) -> None:
    (root / "data").mkdir(parents=True)
    (root / "data" / "train.csv").write_bytes(b"\n".join(lines) + b"\n")


@pytest.mark.lifecycle  # three runs, one killed: ~10 min, with the other run-after-run tests
def test_killed_during_training_then_rerun_pushes_once_and_a_second_run_is_refused(tmp_path):
    _data(tmp_path, sample_lines(300))
    command = _agnews_run(tmp_path, "--epochs", "3")
    lock = Path(f"{tmp_path / 'metadata.sqlite'}.lock")
    first = _start(command, tmp_path / "first.log")
    _wait_for(
        lambda: lock.exists() and lock.read_text().strip() == str(first.pid), 300, "the run's lock"
    )

    code, output = _finished(command, timeout=300)  # the same command, while the first runs
    assert code == ExitCode.REFUSED, output[-3000:]
    assert f"another agnews run (pid {first.pid}) is using" in output
    _assert_clean(output)
    assert first.poll() is None, "the first run must still be running"

    _wait_for(
        lambda: "Padding fraction of the eval batches" in (tmp_path / "first.log").read_text(),
        600,
        "the Trainer to start",
    )
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=60)
    assert not (tmp_path / "serving").exists() or not any((tmp_path / "serving").iterdir())

    code, output = _finished(command)
    assert code == ExitCode.OK, output[-3000:]
    _assert_clean(output)
    assert "Model pushed to:" in output
    assert len([p for p in (tmp_path / "serving").iterdir() if p.name.isdigit()]) == 1
    store = metadata.open_store(str(tmp_path / "metadata.sqlite"))  # still readable
    for node in UPSTREAM:
        context = store.get_context_by_type_and_name("node", f"agnews.{node}")
        last = max(store.get_executions_by_context(context.id), key=lambda e: e.id)
        assert last.last_known_state == metadata_store_pb2.Execution.CACHED, node
    assert local_runner.summarize(str(tmp_path / "metadata.sqlite"), "agnews").pushed

    # Unblessed with --require-push: exit 2, the served version stays.
    code, output = _finished(command + ["--min-accuracy", "1.01", "--require-push", "--no-cache"])
    assert code == ExitCode.NOT_PUSHED, output[-3000:]
    _assert_clean(output)
    assert "Model NOT pushed" in output
    assert len([p for p in (tmp_path / "serving").iterdir() if p.name.isdigit()]) == 1


def test_ctrl_c_stops_the_run_with_a_message_and_no_traceback(tmp_path):
    _data(tmp_path, sample_lines(300))
    run = _start(_agnews_run(tmp_path, "--epochs", "1"), tmp_path / "run.log")
    _wait_for(lambda: (tmp_path / "metadata.sqlite").exists(), 300, "the pipeline to start")
    time.sleep(2)
    run.send_signal(signal.SIGINT)
    assert run.wait(timeout=300) == ExitCode.INTERRUPTED
    output = (tmp_path / "run.log").read_text()
    assert "agnews run: interrupted." in output
    _assert_clean(output)


def test_bad_data_stops_the_run_with_exit_1_and_no_traceback(tmp_path):
    _data(tmp_path, sample_lines(50) + [b'"9","bad label","x"'] * 10)
    code, output = _finished(_agnews_run(tmp_path))
    assert code == ExitCode.STOPPED, output[-3000:]
    assert "agnews run failed:" in output and "rejected.csv" in output
    _assert_clean(output)
    assert os.path.exists(tmp_path / "metadata.sqlite")


def test_a_multi_worker_tf_config_is_refused_before_anything_runs(tmp_path, monkeypatch, capsys):
    from agnews import cli

    monkeypatch.setenv(
        "TF_CONFIG",
        '{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 0}}',
    )
    assert (
        cli.main(
            [
                "run",
                "--pipeline-root",
                str(tmp_path / "pipeline"),
                "--metadata-path",
                str(tmp_path / "metadata.sqlite"),
            ]
        )
        == 1
    )
    assert "TF_CONFIG names 2 training processes" in capsys.readouterr().err
    assert not (tmp_path / "pipeline").exists() and not (tmp_path / "metadata.sqlite").exists()
