"""Wires one model store, one batcher and both APIs onto one event loop (uvloop), and stops them
as an orchestrator expects: on SIGTERM or SIGINT both ports stop accepting, requests in flight
(REST and gRPC) are answered, the request log is closed, and the process exits 0."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import socket
import threading

import grpc
import tensorflow as tf
import uvicorn
import uvloop

from agnews.serving import grpc_api, model_config
from agnews.serving import store as store_lib
from agnews.serving.batcher import Batcher
from agnews.serving.canary import CanaryGuard, TakenOut
from agnews.serving.metrics import Metrics
from agnews.serving.request_log import RequestLog
from agnews.serving.rest import RestApp
from agnews.serving.service import PredictService
from components import settings

GRACE_S = 30  # seconds a stop waits for requests in flight


@dataclasses.dataclass
class ServeOptions:
    model_base_path: str = ""
    model_name: str = settings.SERVING_MODEL_NAME
    model_config_file: str | None = None
    model_config_file_poll_wait_s: float = 0.0
    # Serve the registry's ModelServerConfig beside model_base_path, following its changes.
    from_registry: bool = False
    canary_percent: float = 0.0  # share of requests naming no version sent to `canary`
    # Take the canary out of traffic when more than this share of its last
    # canary_error_window model calls failed (None: never).
    canary_max_error_rate: float | None = None
    canary_error_window: int = settings.DEFAULT_CANARY_ERROR_WINDOW
    file_system_poll_wait_s: float = settings.DEFAULT_FILE_SYSTEM_POLL_WAIT_S
    host: str = settings.DEFAULT_SERVE_HOST
    rest_port: int = settings.DEFAULT_SERVE_PORT
    grpc_port: int | None = settings.DEFAULT_GRPC_PORT  # None: no gRPC
    max_body_bytes: int = settings.DEFAULT_MAX_BODY_BYTES
    max_batch: int = settings.DEFAULT_MAX_BATCH
    batching: bool = True
    batch_max_rows: int = settings.DEFAULT_BATCH_MAX_ROWS
    batch_timeout_ms: float = settings.DEFAULT_BATCH_TIMEOUT_MS
    batch_threads: int | None = settings.DEFAULT_BATCH_THREADS
    log_requests: str | None = None
    log_sample_rate: float = settings.DEFAULT_LOG_SAMPLE_RATE
    # Process-wide: serve_until_signalled sets them before TensorFlow starts (running_in_thread
    # serves in a process whose TensorFlow may already run, and leaves them as they are).
    intra_op_threads: int = settings.DEFAULT_INTRA_OP_THREADS
    inter_op_threads: int = settings.DEFAULT_INTER_OP_THREADS

    def __post_init__(self) -> None:
        if self.canary_max_error_rate is not None and not 0 <= self.canary_max_error_rate < 1:
            raise ValueError(
                f"--canary-max-error-rate must be at least 0 and below 1, not "
                f"{self.canary_max_error_rate:g}"
            )
        if not 0 <= self.canary_percent <= 100:
            raise ValueError(
                f"--canary-percent must be within 0 and 100, not {self.canary_percent:g}"
            )
        if self.from_registry:
            if self.model_config_file:
                raise ValueError(
                    "--from-registry and --model-config-file name two configs: give one"
                )
            self.model_config_file = model_config.registry_config_path(self.model_base_path)
            if not os.path.exists(self.model_config_file) and "://" not in self.model_config_file:
                raise ValueError(
                    f"no registry config at {self.model_config_file}: run `agnews run` (or "
                    "`agnews models list`) with the same --serving-dir first"
                )
            self.model_config_file_poll_wait_s = (
                self.model_config_file_poll_wait_s or self.file_system_poll_wait_s
            )

    def model_configs(self) -> list[model_config.ModelConfig]:
        """The models to serve; ValueError (one line) when the config file is wrong."""
        if self.model_config_file:
            return model_config.read_config_file(self.model_config_file)
        return model_config.from_flags(self.model_name, self.model_base_path)


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: `Server` stops REST and gRPC together."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield


class Server:
    def __init__(self, options: ServeOptions, on_canary_taken_out: TakenOut | None = None):
        """`on_canary_taken_out`: told when CanaryGuard takes a canary out (for the registry)."""
        self.options = options
        self.metrics = Metrics()
        self.store = store_lib.ModelStore(
            options.model_configs(),
            self.metrics,
            poll_wait_s=options.file_system_poll_wait_s,
            config_file=options.model_config_file,
            config_poll_s=options.model_config_file_poll_wait_s,
            canary_percent=options.canary_percent,
        )
        batcher = (
            Batcher(
                options.batch_max_rows,
                options.batch_timeout_ms / 1000,
                self.metrics,
                options.batch_threads or os.cpu_count() or 1,
            )
            if options.batching
            else None
        )
        request_log = (
            RequestLog(options.log_requests, options.log_sample_rate)
            if options.log_requests
            else None
        )
        guard = (
            CanaryGuard(
                self.store,
                options.canary_max_error_rate,
                options.canary_error_window,
                on_canary_taken_out,
            )
            if options.canary_max_error_rate is not None
            else None
        )
        self.service = PredictService(
            self.store, self.metrics, options.max_batch, batcher, request_log, guard
        )
        self.rest_port = self.grpc_port = 0
        self._rest: _Uvicorn | None = None
        self._rest_task: asyncio.Task | None = None
        self._grpc: grpc.aio.Server | None = None

    async def start(self) -> None:
        """Loads the configured versions, then listens (ports 0 pick free ones)."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.store.start)
        rest_socket = socket.create_server(
            (self.options.host, self.options.rest_port), reuse_port=False
        )
        self.rest_port = rest_socket.getsockname()[1]
        self._rest = _Uvicorn(
            uvicorn.Config(
                RestApp(self.service, self.options.max_body_bytes),
                http="httptools",
                lifespan="off",
                access_log=False,
                log_config=None,
                log_level="warning",
                server_header=False,
                date_header=False,
                timeout_graceful_shutdown=GRACE_S,
            )
        )
        self._rest_task = loop.create_task(self._rest.serve(sockets=[rest_socket]))
        if self.options.grpc_port is not None:
            self._grpc = grpc.aio.server()
            grpc_api.add_services(self._grpc, self.service)
            self.grpc_port = self._grpc.add_insecure_port(
                f"{self.options.host}:{self.options.grpc_port}"
            )
            if not self.grpc_port:
                raise OSError(
                    f"cannot listen for gRPC on {self.options.host}:{self.options.grpc_port}"
                )
            await self._grpc.start()
        while not self._rest.started:
            if self._rest_task.done():
                self._rest_task.result()  # raises what stopped it
                raise OSError(f"REST server on port {self.rest_port} did not start")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """Stops accepting on both ports, answers the requests in flight, then releases the rest."""
        if self._rest:
            self._rest.should_exit = True
        await asyncio.gather(
            *([self._grpc.stop(GRACE_S)] if self._grpc else []),
            *([self._rest_task] if self._rest_task else []),
        )
        if self.service.batcher:
            await self.service.batcher.close()
        self.service.close()
        await asyncio.get_running_loop().run_in_executor(None, self.store.stop)

    def where(self) -> str:
        host = self.options.host
        rest = "REST " + ", ".join(
            f"http://{host}:{self.rest_port}/v1/models/{name}" for name in self.store.model_names()
        )
        return rest + (f", gRPC {host}:{self.grpc_port}" if self._grpc else "")


def use_tensorflow_threads(intra_op: int, inter_op: int) -> None:
    """Sizes TensorFlow's thread pools: before the process's first TensorFlow op, else
    ValueError."""
    try:
        tf.config.threading.set_intra_op_parallelism_threads(intra_op)
        tf.config.threading.set_inter_op_parallelism_threads(inter_op)
    except RuntimeError:
        raise ValueError(
            "TensorFlow's thread pools are set before its first op; this process "
            "has already started TensorFlow"
        ) from None


def serve_until_signalled(
    options: ServeOptions, on_ready=print, on_canary_taken_out: TakenOut | None = None
) -> None:
    """Runs the server until SIGTERM or SIGINT, then stops it gracefully."""
    use_tensorflow_threads(options.intra_op_threads, options.inter_op_threads)

    async def main():
        server = Server(options, on_canary_taken_out)
        await server.start()
        stopped = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopped.set)
        on_ready(server)
        await stopped.wait()
        await server.stop()

    uvloop.run(main())


@contextlib.contextmanager
def running_in_thread(options: ServeOptions):
    """The server on its own event loop thread (tests, notebooks); stopped gracefully on exit."""
    loop = uvloop.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="serving-loop", daemon=True)
    thread.start()
    server = Server(options)
    asyncio.run_coroutine_threadsafe(server.start(), loop).result()
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()
