"""`agnews beam-job-service` and `agnews beam-worker` as processes on real sockets: they serve
Beam's Job and worker pool APIs, the job service names itself by host name (what clients on other
hosts stage artifacts to), and SIGTERM stops each with exit 0. A whole run through them, hosts
apart, is tests/integration/pipeline/test_cluster_beam.py (make test-cluster)."""

import signal
import socket
import subprocess

import grpc
from apache_beam.portability.api import (
    beam_fn_api_pb2,
    beam_fn_api_pb2_grpc,
    beam_job_api_pb2,
    beam_job_api_pb2_grpc,
    beam_runner_api_pb2,
)

from tests.helpers.cli import AGNEWS


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start(command: str, port: int) -> subprocess.Popen:
    process = subprocess.Popen(
        [*AGNEWS, command, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    first_line = process.stdout.readline()  # printed once it serves
    assert f"{port}" in first_line, first_line + process.stderr.read()
    return process


def _stopped_cleanly(process: subprocess.Popen) -> str:
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "Traceback" not in err
    return err


def test_the_job_service_serves_the_job_api_under_its_host_name_and_stops_on_sigterm():
    port = _free_port()
    process = _start("beam-job-service", port)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
            stub = beam_job_api_pb2_grpc.JobServiceStub(channel)
            assert list(stub.GetJobs(beam_job_api_pb2.GetJobsRequest()).job_info) == []
            prepared = stub.Prepare(
                beam_job_api_pb2.PrepareJobRequest(
                    pipeline=beam_runner_api_pb2.Pipeline(), job_name="probe"
                )
            )
        # Beam's own job service says localhost here: unreachable from any other host.
        assert prepared.artifact_staging_endpoint.url == f"{socket.getfqdn()}:{port}"
    finally:
        _stopped_cleanly(process)


def test_the_worker_pool_serves_on_every_address_and_stops_on_sigterm():
    port = _free_port()
    process = _start("beam-worker", port)
    try:
        own_address = socket.gethostbyname(socket.gethostname())
        for address in {"127.0.0.1", own_address}:
            with grpc.insecure_channel(f"{address}:{port}") as channel:
                grpc.channel_ready_future(channel).result(timeout=30)
                stub = beam_fn_api_pb2_grpc.BeamFnExternalWorkerPoolStub(channel)
                stopped = stub.StopWorker(beam_fn_api_pb2.StopWorkerRequest(worker_id="none"))
                assert stopped == beam_fn_api_pb2.StopWorkerResponse()
    finally:
        _stopped_cleanly(process)
