"""`agnews beam-worker` and `agnews beam-job-service`: the two services of a run through Beam's
portable Job API (`agnews run --beam-workers HOST:PORT --beam-job-service HOST:PORT`), the path
Flink, Spark and Dataflow share, each on a host of its own.

Beam ships both, but not for other hosts: its worker pool (worker_pool_main) starts each worker
as `python` from PATH, which outside this environment is another Python whose workers die with
"No module named 'apache_beam'"; its job service (local_job_service_main) listens on localhost
only and tells clients to stage their artifacts at `localhost`. Here the workers run this
environment's Python, so they import the agnews (and TFX, TFT, TFMA) installed beside it (on a
worker host: the agnews wheel installed in a venv), and the job service listens on every address
and names itself by its host name, which is also how Beam tells the workers to call it back.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from importlib import metadata as package_metadata


def serve_worker_pool(port: int) -> None:
    """Serves a worker pool on `port` (all addresses) until SIGTERM or Ctrl-C; its workers end
    with it."""
    from apache_beam.runners.worker.worker_pool_main import BeamFnExternalWorkerPoolServicer

    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]
    _, server = BeamFnExternalWorkerPoolServicer.start(use_process=True, port=port)
    import components

    print(
        f"Beam worker pool on port {port}: workers run {sys.executable} with agnews "
        f"{package_metadata.version('agnews')} from {os.path.dirname(components.__path__[0])}",
        flush=True,
    )
    _serve_until_stopped(lambda: server.stop(grace=None))


def serve_job_service(port: int, staging_dir: str | None) -> None:
    """Serves a Beam job service on `port` (all addresses) until SIGTERM or Ctrl-C: it runs each
    job it is given (Beam's FnApiRunner, here) on the job's own SDK workers."""
    from apache_beam.runners.portability.local_job_service import LocalJobServicer

    class ClusterJobServicer(LocalJobServicer):
        def get_bind_address(self) -> str:
            return "[::]"

        def get_service_address(self) -> str:
            return socket.getfqdn()

    servicer = ClusterJobServicer(staging_dir)
    servicer.start_grpc_server(port)
    print(
        f"Beam job service on {socket.getfqdn()}:{port} "
        f"(Beam {package_metadata.version('apache-beam')})",
        flush=True,
    )
    _serve_until_stopped(lambda: servicer.stop(timeout=0))


def _serve_until_stopped(stop: Callable[[], object]) -> None:
    """Waits for SIGTERM (a scheduler's or an init system's stop) or Ctrl-C, then calls `stop`."""
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        stopped.wait()
    finally:
        stop()
