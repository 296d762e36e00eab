"""`agnews run` on the embedded 3k sample with Beam's DirectRunner against the same run through
Beam's portable Job API (issue 26 item 6): `agnews beam-job-service` and `agnews beam-worker`
started on this machine's loopback, `agnews run --beam-workers ... --beam-job-service ...`.

Each run is fresh (its own directory, nothing cached), DirectRunner first. On one 2-core machine
the job service, the SDK workers and the orchestrator share both cores, so the ratio shows what
the Job API path costs (submission, artifact staging, Fn API data transfer, worker start-up per
stage), not a cluster's speed-up. The per-component CPU column counts the orchestrating process
only: on the portable path the Beam work runs in the pool's worker processes.

    .venv/bin/python bench/portable.py
"""

from __future__ import annotations

import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

from e2e import AGNEWS, run_once, table
from publish import publish

# The Beam-powered components: where the two runs differ.
BEAM_COMPONENTS = (
    "FileBasedExampleGen",
    "StatisticsGen",
    "Transform",
    "baseline_transform",
    "Evaluator",
    "holdout_evaluator",
)
JOB_SERVICE_PORT, WORKER_POOL_PORT = 18099, 15000


def _started(command: list[str], ready: str, log: Path) -> subprocess.Popen:
    """`command` in the background, once its log shows `ready`."""
    process = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while ready not in log.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{command[1]} did not start:\n{log.read_text()}")
        time.sleep(0.5)
    return process


def main() -> None:
    results = {}
    with tempfile.TemporaryDirectory(prefix="agnews-portable-") as temp:
        work = Path(temp)
        print("agnews run on the 3k sample, DirectRunner ...", flush=True)
        (work / "direct").mkdir()
        results["DirectRunner"] = run_once(work / "direct", None)
        services = [
            _started(
                [AGNEWS, "beam-job-service", "--port", str(JOB_SERVICE_PORT)],
                f":{JOB_SERVICE_PORT}",
                work / "job-service.log",
            ),
            _started(
                [AGNEWS, "beam-worker", "--port", str(WORKER_POOL_PORT)],
                f"port {WORKER_POOL_PORT}:",
                work / "worker.log",
            ),
        ]
        try:
            print("agnews run on the 3k sample, portable Job API ...", flush=True)
            (work / "portable").mkdir()
            results["portable"] = run_once(
                work / "portable",
                None,
                (
                    *("--beam-workers", f"localhost:{WORKER_POOL_PORT}"),
                    *("--beam-job-service", f"localhost:{JOB_SERVICE_PORT}"),
                ),
            )
            workers = (work / "worker.log").read_text().count("Starting worker with command")
        finally:
            for process in services:
                process.terminate()
                process.wait(timeout=60)
    beam = {
        name: sum(r["components"][node]["wall_s"] for node in BEAM_COMPONENTS)
        for name, r in results.items()
    }
    ratio = results["portable"]["wall_s"] / results["DirectRunner"]["wall_s"]
    summary = (
        f"Whole command, portable over DirectRunner: **{ratio:.2f}x** "
        f"({results['portable']['wall_s']:.0f} s / {results['DirectRunner']['wall_s']:.0f} s); "
        f"the Beam-powered components ({', '.join(BEAM_COMPONENTS)}): "
        f"{beam['portable']:.0f} s / {beam['DirectRunner']:.0f} s "
        f"({beam['portable'] / beam['DirectRunner']:.2f}x); the worker pool started "
        f"{workers} SDK workers."
    )
    conditions = (
        f"{platform.node()}, {os.cpu_count()} cores, {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d')}; one run each in a fresh directory, default settings; "
        "job service and worker pool on this machine's loopback (they share its 2 cores with "
        "the run); CPU columns: the orchestrating process only"
    )
    publish(
        "portable",
        "# DirectRunner against Beam's portable Job API, 3k sample\n\n"
        + conditions
        + "\n\n"
        + summary
        + "\n\n"
        + table(results),
        {"conditions": conditions, "results": results, "workers_started": workers, "beam_s": beam},
    )


if __name__ == "__main__":
    main()
