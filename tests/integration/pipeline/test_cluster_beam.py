"""Beam on a cluster of hosts (issue 26 item 2): every Beam-powered component, and `agnews
score`, through Beam's portable Job API, with `agnews beam-job-service` on one host and the SDK
workers of `agnews beam-worker` on another, neither of them the orchestrator's. The worker
host's environment is a venv with the agnews wheel installed, as a worker image has it, started
outside this checkout: nothing reaches the workers from its source tree. The outputs equal the
DirectRunner's (first_run, same data and arguments)."""

import filecmp
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ml_metadata.proto import metadata_store_pb2

from agnews.exit_codes import ExitCode
from components.artifacts import REJECTED_FILE_NAME, read_summary
from pipeline import beam_packaging, metadata, node_ids, report
from pipeline.config import PROJECT_DIR
from tests.helpers.cli import AGNEWS, run_args
from tests.helpers.data import newest_output
from tests.helpers.hosts import Hosts, hosts
from tests.helpers.serving import version_dirs

pytestmark = pytest.mark.cluster

JOB_SERVICE_PORT, WORKER_POOL_PORT = 8099, 50000
# A whole run on first_run's tiny data through the cluster, generously (about 3 min here).
RUN_S = 1200


def _worker_environment(directory: Path) -> Path:
    """A venv with the agnews wheel built from this checkout and its locked dependencies (as the
    pipeline image's Dockerfile installs them), the worker host's Python; returns its bin/."""
    uv = beam_packaging.find_uv()
    wheel = beam_packaging.build_wheel(str(directory / "dist"))
    requirements = directory / "requirements.txt"
    venv = directory / "venv"
    steps = [
        [uv, "export", "--frozen", "--no-dev", "--no-hashes", "--no-emit-project",
         "--project", str(PROJECT_DIR), "--output-file", str(requirements)],
        [uv, "venv", "--quiet", "--python", os.path.realpath(sys.executable), str(venv)],
        [uv, "pip", "install", "--quiet", "--compile-bytecode", "--no-deps",
         "--python", str(venv / "bin" / "python"), "-r", str(requirements), wheel],
    ]  # fmt: skip
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=1200)
        assert done.returncode == 0, f"{step}:\n{done.stderr[-3000:]}"
    return venv / "bin"


def _wait_for_line(
    log: Path, text: str, process: subprocess.Popen, seconds: float = 120, offset: int = 0
) -> None:
    """Until `text` appears in `log` after its first `offset` characters."""
    deadline = time.monotonic() + seconds
    while text not in log.read_text()[offset:]:
        assert process.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.5)


class _Cluster:
    """The hosts, and the Beam services started on them from the worker environment in a
    directory outside this checkout (each in a session of its own: killed with its workers)."""

    def __init__(self, made: Hosts, directory: Path, bin_dir: Path):
        self.made, self.directory, self.bin_dir = made, directory, bin_dir
        self.services: dict[str, subprocess.Popen] = {}

    @property
    def worker_log(self) -> Path:
        return self.directory / "beam-worker.log"

    def start(self, host: str) -> None:
        command, port = SERVICES[host]
        log = self.directory / f"{host}.log"
        offset = log.stat().st_size if log.exists() else 0  # a restart appends
        with open(log, "a") as out:
            process = self.made.popen(
                host,
                [str(self.bin_dir / "agnews"), command, "--port", str(port)],
                cwd=self.directory,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "PYTHONPATH": ""},
            )
        self.services[host] = process
        ready = f":{port}" if command == "beam-job-service" else f"port {port}:"
        _wait_for_line(log, ready, process, offset=offset)

    def stop(self, host: str, signal_number: int = signal.SIGTERM) -> None:
        process = self.services.pop(host)
        os.killpg(process.pid, signal_number)
        process.wait(timeout=60)


# host → (the agnews command it serves, its port)
SERVICES = {
    "beam-jobs": ("beam-job-service", JOB_SERVICE_PORT),
    "beam-worker": ("beam-worker", WORKER_POOL_PORT),
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """The orchestrator, a Beam job service and a Beam worker pool, each a host of its own."""
    directory = tmp_path_factory.mktemp("cluster")
    bin_dir = _worker_environment(directory)
    with hosts(["orchestrator", *SERVICES]) as made:
        running = _Cluster(made, directory, bin_dir)
        try:
            for host in SERVICES:
                running.start(host)
            pool = running.worker_log.read_text()
            # Its workers run the worker venv's Python and import agnews from its site-packages.
            assert f"workers run {bin_dir / 'python'} with agnews" in pool, pool
            assert f"from {bin_dir.parent}/lib/python3.10/site-packages" in pool, pool
            yield running
        finally:
            for host in list(running.services):
                running.stop(host)


# The flags that send a command's Beam stages to the cluster.
ON_CLUSTER = (
    *("--beam-workers", f"beam-worker:{WORKER_POOL_PORT}"),
    *("--beam-job-service", f"beam-jobs:{JOB_SERVICE_PORT}"),
)


def _on_cluster(args: list[str], root: Path, first_root: Path) -> list[str]:
    """first_run's `agnews` arguments with its paths under `root`, through the cluster."""
    return [*(arg.replace(str(first_root), str(root)) for arg in args), *ON_CLUSTER]


def _started_workers(log: Path) -> int:
    return log.read_text().count("Starting worker with command")


def test_a_run_on_the_cluster_gives_the_direct_runners_outputs(first_run, cluster, tmp_path):
    made, worker_log = cluster.made, cluster.worker_log
    first_root, first_args = first_run
    for inputs in ("data", "score"):
        shutil.copytree(first_root / inputs, tmp_path / inputs)
    workers_before = _started_workers(worker_log)
    done = made.run(
        "orchestrator",
        [*AGNEWS, *_on_cluster(first_args, tmp_path, first_root)],
        capture_output=True,
        text=True,
        timeout=RUN_S,
    )
    assert done.returncode == ExitCode.OK, done.stdout[-3000:] + done.stderr[-5000:]
    assert "Traceback" not in done.stderr
    # Each Beam stage asked the worker host for workers; they ran the installed wheel.
    assert _started_workers(worker_log) - workers_before >= 6

    def output(root: Path, component: str, name: str) -> str:
        return newest_output(root, component, name)

    ingested = [output(root, "FileBasedExampleGen", "examples") for root in (first_root, tmp_path)]
    assert read_summary(ingested[1]) == read_summary(ingested[0])
    assert Path(ingested[1], REJECTED_FILE_NAME).read_bytes() == (
        Path(ingested[0], REJECTED_FILE_NAME).read_bytes()
    )
    for transform in ("Transform", "baseline_transform"):
        assets = [
            Path(output(root, transform, "transform_graph"), "transform_fn", "assets")
            for root in (first_root, tmp_path)
        ]
        names = sorted(os.listdir(assets[0]))
        assert names and sorted(os.listdir(assets[1])) == names
        matched, differ, errors = filecmp.cmpfiles(assets[0], assets[1], names, shallow=False)
        assert (differ, errors) == ([], []), transform
    for evaluator in ("Evaluator", "holdout_evaluator"):
        metrics = [
            report.load_evaluation(output(root, evaluator, "evaluation")).metrics
            for root in (first_root, tmp_path)
        ]
        assert metrics[0][""][report.ACCURACY] > 0
        assert metrics[1].keys() == metrics[0].keys()
        for slice_name, values in metrics[0].items():
            assert metrics[1][slice_name] == pytest.approx(values, abs=1e-6), slice_name
    # BulkInferrer's scores, but for the model version (each run pushes its own).
    scores = [
        [
            line.rsplit(",", 1)[0]
            for line in Path(root, "report", "scores.csv").read_text().splitlines()
        ]
        for root in (first_root, tmp_path)
    ]
    assert len(scores[0]) > 1 and scores[1] == scores[0]


def test_agnews_score_on_the_cluster_gives_the_direct_runners_scores(first_run, cluster, tmp_path):
    made, worker_log = cluster.made, cluster.worker_log
    first_root, _ = first_run
    model = max(glob.glob(str(first_root / "serving" / "*")))

    def score(output: Path, *extra: str) -> list[str]:
        return [*AGNEWS, "score", str(first_root / "score"), "--model", model,
                "--output", str(output), *extra]  # fmt: skip

    direct = subprocess.run(
        score(tmp_path / "direct"), capture_output=True, text=True, timeout=RUN_S
    )
    assert direct.returncode == ExitCode.OK, direct.stderr[-3000:]
    workers_before = _started_workers(worker_log)
    on_cluster = made.run(
        "orchestrator",
        score(tmp_path / "cluster", *ON_CLUSTER),
        capture_output=True,
        text=True,
        timeout=RUN_S,
    )
    assert on_cluster.returncode == ExitCode.OK, on_cluster.stderr[-3000:]
    assert _started_workers(worker_log) > workers_before

    def scores(directory: Path) -> list[str]:
        lines = [
            line
            for path in sorted(glob.glob(str(directory / "scores-*.csv")))
            for line in Path(path).read_text().splitlines()[1:]
        ]
        assert lines
        return sorted(lines)

    assert scores(tmp_path / "cluster") == scores(tmp_path / "direct")
    assert (
        json.loads((tmp_path / "cluster" / "summary.json").read_text())["rows"]
        == (json.loads((tmp_path / "direct" / "summary.json").read_text())["rows"])
    )


def test_the_worker_host_killed_during_transform_stops_the_run_and_the_rerun_pushes_once(
    first_run, cluster, tmp_path
):
    """The worker pool and its workers killed while Transform runs (last in this module: it
    restarts the pool): the run stops within RUN_S with one line naming the pool, no version;
    the same command once the pool is back pushes exactly one, trained on the Transform output of
    the rerun's own finished execution, never the killed one's."""
    first_root, _ = first_run
    shutil.copytree(first_root / "data", tmp_path / "data")
    command = [
        *AGNEWS,
        *run_args(tmp_path, "--epochs", "1", "--no-baseline", *ON_CLUSTER),
    ]
    log = tmp_path / "stopped.log"
    with open(log, "w") as out, open(tmp_path / "stopped.err", "w") as err:
        stopped = cluster.made.popen("orchestrator", command, stdout=out, stderr=err)
    try:
        _wait_for_line(log, "span_window", stopped, seconds=RUN_S)
        time.sleep(1)  # Transform, the next node, has started (its run takes ~6 s here)
        cluster.stop("beam-worker", signal.SIGKILL)
        stopped.wait(timeout=RUN_S)
    finally:
        if stopped.poll() is None:
            stopped.kill()
    errors = (tmp_path / "stopped.err").read_text()
    assert stopped.returncode == ExitCode.STOPPED, log.read_text()[-2000:] + errors[-3000:]
    assert "Traceback" not in errors, errors[-3000:]
    assert errors.splitlines()[0] == (
        f"agnews run failed: the run stopped: the Beam worker pool at beam-worker:"
        f"{WORKER_POOL_PORT} is unreachable. Components that finished are recorded: run the "
        "same command again once it answers (they are cached, and nothing the stopped one "
        "half-wrote is used)."
    ), errors
    assert version_dirs(tmp_path / "serving") == []

    cluster.start("beam-worker")
    again = cluster.made.run("orchestrator", command, capture_output=True, text=True, timeout=RUN_S)
    assert again.returncode == ExitCode.OK, again.stdout[-3000:] + again.stderr[-3000:]
    assert len(version_dirs(tmp_path / "serving")) == 1
    store = metadata.open_store(str(tmp_path / "metadata.sqlite"))

    def executions(node: str) -> list:
        """`node`'s executions, oldest first."""
        context = store.get_context_by_type_and_name("node", f"agnews.{node}")
        return sorted(store.get_executions_by_context(context.id), key=lambda e: e.id)

    def artifacts(execution, kind) -> set[int]:
        events = store.get_events_by_execution_ids([execution.id])
        return {event.artifact_id for event in events if event.type == kind}

    killed, finished = executions(node_ids.MODEL_NODES.transform)
    assert finished.last_known_state == metadata_store_pb2.Execution.COMPLETE
    assert killed.last_known_state != metadata_store_pb2.Execution.COMPLETE
    (trainer,) = executions(node_ids.MODEL_NODES.trainer)
    used = artifacts(trainer, metadata_store_pb2.Event.INPUT)
    assert used & artifacts(finished, metadata_store_pb2.Event.OUTPUT)
    assert not used & artifacts(killed, metadata_store_pb2.Event.OUTPUT)
