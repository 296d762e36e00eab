"""ML Metadata on a MariaDB server (issue 26 item 1), a real throwaway server that
tools/mariadb starts (as `make db` does): a whole `agnews run` writes its lineage there and every
command that reads ML Metadata finds it; the run lock is the server's, so a run of the same
pipeline from elsewhere is refused while another pipeline's is not; an unreachable server or a
refused user is one line naming the server, and nothing is written."""

import json
import os
import socket
import subprocess
import time

import pytest

from agnews import cli
from agnews.exit_codes import ExitCode
from pipeline import metadata, metadata_connection, run_lock
from pipeline.config import PROJECT_DIR
from tests.helpers.cli import AGNEWS, run_args
from tests.helpers.data import sample_lines
from tests.helpers.serving import replay_requests, unseen_rows, version_dirs

pytestmark = pytest.mark.db

ROWS = 300


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(mysql:// URI, password file) of a throwaway MariaDB server on loopback."""
    directory = tmp_path_factory.mktemp("mariadb")
    port = _free_port()
    started = subprocess.run(
        [str(PROJECT_DIR / "tools" / "mariadb"), "start", str(directory), str(port)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        yield f"mysql://agnews@127.0.0.1:{port}/agnews", directory / "password"
    finally:
        subprocess.run(
            [str(PROJECT_DIR / "tools" / "mariadb"), "stop", str(directory)], timeout=120
        )


def _data(root) -> None:
    (root / "data").mkdir(parents=True)
    (root / "data" / "train.csv").write_bytes(b"\n".join(sample_lines(ROWS)) + b"\n")


def test_a_run_writes_its_lineage_on_the_server_and_every_reader_finds_it(
    server, tmp_path, monkeypatch, capsys
):
    uri, password_file = server
    _data(tmp_path)
    store_flags = ["--metadata-uri", uri]
    args = run_args(tmp_path, "--epochs", "1", "--no-baseline", *store_flags)
    shown = subprocess.run(
        [*AGNEWS, *args, "--metadata-password-file", str(password_file), "--print-config"],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    assert json.loads(shown.stdout)["metadata_uri"] == uri
    assert password_file.read_text().strip() not in shown.stdout + shown.stderr

    done = subprocess.run(
        [*AGNEWS, *args, "--metadata-password-file", str(password_file)],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == ExitCode.OK, done.stdout[-3000:] + done.stderr[-3000:]
    assert not (tmp_path / "metadata.sqlite").exists()  # the lineage is on the server only
    (version,) = [int(p.name) for p in version_dirs(tmp_path / "serving")]

    # The readers, with the password from the environment this time.
    monkeypatch.setenv(metadata_connection.PASSWORD_VARIABLE, password_file.read_text().strip())
    store = metadata.open_store(uri)
    assert metadata.latest_run_id(store, "agnews") is not None
    assert [
        int(p.custom_properties["pushed_version"].string_value)
        for p in metadata.pushes(store, "agnews", "Pusher")
    ] == [version]
    models = ["models", *store_flags, "--serving-dir", str(tmp_path / "serving")]
    capsys.readouterr()
    assert cli.main([*models, "list", "--json"]) == ExitCode.OK
    (entry,) = map(json.loads, capsys.readouterr().out.splitlines())
    assert (entry["version"], entry["aliases"]) == (version, ["stable"])
    assert cli.main(["report", str(tmp_path), *store_flags]) == ExitCode.OK
    assert "holdout accuracy" in (tmp_path / "report" / "report.md").read_text()
    replay_requests(tmp_path / "logs", version, unseen_rows(ROWS)[:50])
    assert cli.main(["skew", "--logs", str(tmp_path / "logs"), *store_flags]) == ExitCode.OK
    assert f"agnews version {version}: 50 logged rows vs training statistics" in (
        capsys.readouterr().out
    )


def test_the_run_lock_is_the_servers_per_pipeline(server, tmp_path, monkeypatch):
    """A run of the same pipeline with another pipeline root and run directory (as from another
    host) is refused while the lock is held, naming where the holder connects from; another
    pipeline on the same server takes its own lock meanwhile."""
    uri, password_file = server
    monkeypatch.setenv(metadata_connection.PASSWORD_FILE_VARIABLE, str(password_file))
    _data(tmp_path)
    with run_lock.exclusive(uri, str(tmp_path / "elsewhere"), "agnews"):
        with run_lock.exclusive(uri, str(tmp_path / "other_root"), "other_pipeline"):
            pass
        refused = subprocess.run(
            [*AGNEWS, *run_args(tmp_path, "--metadata-uri", uri)],
            capture_output=True,
            text=True,
            timeout=600,
        )
    assert refused.returncode == ExitCode.REFUSED, refused.stdout + refused.stderr
    (line,) = refused.stderr.splitlines()
    assert "another agnews run of agnews" in line and "connected from 127.0.0.1:" in line, line
    assert not (tmp_path / "pipeline").exists()
    with run_lock.exclusive(uri, str(tmp_path / "elsewhere"), "agnews"):  # released: free again
        pass


def test_a_held_server_lock_is_kept_alive_and_a_silent_holders_expires(server, monkeypatch):
    """The holder's connection is pinged, so the server never drops it as idle; a holder that
    stops answering (its host gone) loses the lock once the idle time-out passes."""
    uri, password_file = server
    address = metadata_connection.metadata_server(uri)
    monkeypatch.setenv(metadata_connection.PASSWORD_FILE_VARIABLE, str(password_file))
    monkeypatch.setattr(run_lock, "LOCK_PING_S", 0.5)
    monkeypatch.setattr(run_lock, "LOCK_IDLE_TIMEOUT_S", 2)
    with run_lock.server_lock(address, "kept", "the holder"):
        time.sleep(4)  # twice the idle time-out
        with pytest.raises(run_lock.RunInProgress), run_lock.server_lock(address, "kept", "x"):
            pass

    silent = metadata_connection.connect(address)
    with silent.cursor() as cursor:
        cursor.execute("SELECT GET_LOCK(%s, 0)", (run_lock.lock_name(address, "silent"),))
        cursor.execute("SET SESSION wait_timeout = 2")  # what the holder set, then went silent
    with pytest.raises(run_lock.RunInProgress), run_lock.server_lock(address, "silent", "x"):
        pass
    time.sleep(4)  # the server drops the silent connection, and its lock
    with run_lock.server_lock(address, "silent", "x"):
        pass


@pytest.mark.parametrize("problem", ["is unreachable", "refused the connection"])
def test_a_server_that_cannot_be_used_is_one_line_and_nothing_is_written(server, tmp_path, problem):
    uri, password_file = server
    port = _free_port() if problem == "is unreachable" else int(uri.split(":")[2].split("/")[0])
    bad = f"mysql://agnews@127.0.0.1:{port}/agnews"
    _data(tmp_path)
    done = subprocess.run(
        [*AGNEWS, *run_args(tmp_path, "--metadata-uri", bad)],
        capture_output=True,
        text=True,
        timeout=600,
        env={
            **os.environ,
            metadata_connection.PASSWORD_VARIABLE: "wrong" if problem != "is unreachable" else "",
        },
    )
    assert done.returncode == ExitCode.STOPPED, done.stdout + done.stderr
    (line,) = done.stderr.splitlines()
    assert f"the ML Metadata server 127.0.0.1:{port} {problem}" in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
