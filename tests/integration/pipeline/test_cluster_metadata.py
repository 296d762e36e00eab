"""ML Metadata on a MariaDB server on a host of its own (issue 26 items 4 and 5): the
orchestrator reaches it by name; a run of the same pipeline from a second orchestrator host is
refused (exit 3) naming the host the holder connects from; the server killed during the Trainer
stops the run with one line, and once it is back the same command pushes exactly one version."""

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from agnews.exit_codes import ExitCode
from pipeline import metadata_connection
from pipeline.config import PROJECT_DIR
from tests.helpers.cli import AGNEWS, run_args
from tests.helpers.data import sample_lines
from tests.helpers.hosts import hosts
from tests.helpers.serving import version_dirs

pytestmark = pytest.mark.cluster

MARIADB = str(PROJECT_DIR / "tools" / "mariadb")
MYSQL_PORT = 3306
# One run on 300 rows and 3 epochs takes ~3 min here; generously.
RUN_S = 1200


def _mariadb(made, action: str, directory: Path) -> None:
    extra = [str(MYSQL_PORT), made.address["metadata-db"]] if action == "start" else []
    done = made.run(
        "metadata-db",
        [MARIADB, action, str(directory), *extra],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def _assert_one_line(output: str) -> str:
    assert "Traceback" not in output, output[-3000:]
    (line,) = output.strip().splitlines()
    return line


def test_a_metadata_server_on_its_own_host_refuses_a_second_orchestrator_and_survives_a_kill(
    tmp_path,
):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.csv").write_bytes(b"\n".join(sample_lines(300)) + b"\n")
    database = tmp_path / "mariadb"
    uri = f"mysql://agnews@metadata-db:{MYSQL_PORT}/agnews"
    command = [
        *AGNEWS,
        *run_args(tmp_path, "--metadata-uri", uri, "--epochs", "3", "--no-baseline"),
    ]
    environment = {
        **os.environ,
        metadata_connection.PASSWORD_FILE_VARIABLE: str(database / "password"),
    }
    serving = tmp_path / "serving"
    # Debian's packages, when missing: from this host, whose network reaches the registry.
    installed = subprocess.run([MARIADB, "install"], capture_output=True, text=True, timeout=900)
    assert installed.returncode == 0, installed.stderr
    with hosts(["orchestrator", "second-orchestrator", "metadata-db"]) as made:
        try:
            _mariadb(made, "start", database)
            log = tmp_path / "first.log"
            with open(log, "w") as out:
                first = made.popen(
                    "orchestrator", command, stdout=out, stderr=subprocess.STDOUT, env=environment
                )
            try:
                _wait_for(
                    lambda: "Padding fraction of the eval batches" in log.read_text(),
                    RUN_S,
                    "the Trainer to start",
                )
                second = made.run(
                    "second-orchestrator",
                    command,
                    capture_output=True,
                    text=True,
                    timeout=600,
                    env=environment,
                )
                assert second.returncode == ExitCode.REFUSED, second.stdout + second.stderr
                line = _assert_one_line(second.stderr)
                assert "another agnews run of agnews" in line, line
                assert f"connected from {made.address['orchestrator']}:" in line, line
                assert first.poll() is None, "the first run must still be running"

                # The server dies during the Trainer; its host stays.
                pid = int((database / "mysqld.pid").read_text())
                os.kill(pid, signal.SIGKILL)
                first.wait(timeout=RUN_S)
            finally:
                if first.poll() is None:
                    first.kill()
            output = log.read_text()
            assert first.returncode == ExitCode.STOPPED, output[-3000:]
            assert "Traceback" not in output, output[-3000:]
            assert f"the ML Metadata server metadata-db:{MYSQL_PORT}" in output, output[-3000:]
            assert version_dirs(serving) == []

            _mariadb(made, "start", database)  # the same data directory: the store as it was
            again = made.run(
                "orchestrator",
                command,
                capture_output=True,
                text=True,
                timeout=RUN_S,
                env=environment,
            )
            assert again.returncode == ExitCode.OK, again.stdout[-3000:] + again.stderr[-3000:]
            assert "Traceback" not in again.stdout + again.stderr
            assert "Model pushed to:" in again.stdout
            assert len(version_dirs(serving)) == 1
        finally:
            _mariadb(made, "stop", database)
