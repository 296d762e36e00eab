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
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agnews.exit_codes import ExitCode
from components.artifacts import REJECTED_FILE_NAME, read_summary
from pipeline import beam_packaging, report
from pipeline.config import PROJECT_DIR
from tests.helpers.cli import AGNEWS
from tests.helpers.data import newest_output
from tests.helpers.hosts import hosts

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


def _wait_for_line(log: Path, text: str, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while text not in log.read_text():
        assert process.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.5)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """(hosts, the worker host's log): the orchestrator, a Beam job service and a Beam worker
    pool, each a host of its own, the services started from the worker environment in a
    directory outside this checkout."""
    directory = tmp_path_factory.mktemp("cluster")
    bin_dir = _worker_environment(directory)
    with hosts(["orchestrator", "beam-jobs", "beam-worker"]) as made:
        services = []
        try:
            for host, command, port in [
                ("beam-jobs", "beam-job-service", JOB_SERVICE_PORT),
                ("beam-worker", "beam-worker", WORKER_POOL_PORT),
            ]:
                log = directory / f"{host}.log"
                with open(log, "w") as out:
                    process = made.popen(
                        host,
                        [str(bin_dir / "agnews"), command, "--port", str(port)],
                        cwd=directory,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                        env={**os.environ, "PYTHONPATH": ""},
                    )
                services.append(process)
                _wait_for_line(log, f":{port}" if host == "beam-jobs" else f"port {port}:", process)
            pool = (directory / "beam-worker.log").read_text()
            # Its workers run the worker venv's Python and import agnews from its site-packages.
            assert f"workers run {bin_dir / 'python'} with agnews" in pool, pool
            assert f"from {bin_dir.parent}/lib/python3.10/site-packages" in pool, pool
            yield made, directory / "beam-worker.log"
        finally:
            for process in services:
                os.killpg(process.pid, 15)
                process.wait(timeout=60)


def _on_cluster(args: list[str], root: Path, first_root: Path) -> list[str]:
    """first_run's `agnews` arguments with its paths under `root`, through the cluster."""
    return [
        *(arg.replace(str(first_root), str(root)) for arg in args),
        *("--beam-workers", f"beam-worker:{WORKER_POOL_PORT}"),
        *("--beam-job-service", f"beam-jobs:{JOB_SERVICE_PORT}"),
    ]


def _started_workers(log: Path) -> int:
    return log.read_text().count("Starting worker with command")


def test_a_run_on_the_cluster_gives_the_direct_runners_outputs(first_run, cluster, tmp_path):
    made, worker_log = cluster
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
    made, worker_log = cluster
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
        score(
            tmp_path / "cluster",
            *("--beam-workers", f"beam-worker:{WORKER_POOL_PORT}"),
            *("--beam-job-service", f"beam-jobs:{JOB_SERVICE_PORT}"),
        ),
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
