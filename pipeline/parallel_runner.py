"""TFX's LocalDagRunner, with each node in a process of its own and the nodes whose upstream
nodes are done run at the same time.

LocalDagRunner launches one node after the other in its own process (its TODO b/171319478 asks
for threads), so on a 2-core machine the baseline's Transform and Trainer, the Evaluators and
the servability check wait for each other while a core idles. Threads would not help: the
components hold Python's GIL and share process-wide library state (TFT traces under one global
object tracker, Keras seeds random ops from one global seed); that was measured (bench/README).
So this runner forks a child per node, which launches it with TFX's own portable Launcher and
its own ML Metadata connection, as LocalDagRunner's loop does: caching, lineage, run contexts
and the "Component X is running/finished" log lines are TFX's. A fork starts in milliseconds,
with every module the parent imported; a child also starts with a fresh TensorFlow runtime,
which makes the Trainer's epochs as fast as in a process of their own (a Trainer after a
Transform in one process was measured ~1.2x slower).

Forking is only safe before TensorFlow has started its thread pools in the parent (a child
does not inherit threads, and waits forever on a pool that is not there). `agnews run` forks
from a process that has only imported TensorFlow; a caller that has already run TensorFlow in
its process gets LocalDagRunner's loop instead, and the log says so.

A failing node lets the running ones finish, starts no other, and its error is raised in the
parent as LocalDagRunner raises it. Each child dies with the parent (PR_SET_PDEATHSIG), so a
killed run leaves what a killed LocalDagRunner leaves (docs/operations.md); the run lock's file
is shared with the children, so no next run starts while one of them still writes.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import threading
import traceback
from collections.abc import Callable

from absl import logging
from tfx.dsl.compiler import constants
from tfx.orchestration import metadata
from tfx.orchestration.local import runner_utils
from tfx.orchestration.local.local_dag_runner import LocalDagRunner
from tfx.orchestration.portable import launcher, runtime_parameter_utils
from tfx.proto.orchestration import pipeline_pb2

_PR_SET_PDEATHSIG = 1  # linux/prctl.h
# A failing child's exception, pickled, must fit a pipe's buffer (64 KiB on Linux): the parent
# reads it once the child has ended.
MAX_MESSAGE_BYTES = 32 * 1024
# How long a stopped child has between SIGTERM and SIGKILL.
STOP_GRACE_S = 10.0


def _native_threads() -> int:
    """Threads of this process that Python's threading did not start (TensorFlow's pools,
    gRPC's pollers, ...)."""
    return len(os.listdir("/proc/self/task")) - threading.active_count()


# The native threads that importing TensorFlow, Beam and TFX leaves (no pool among them).
_NATIVE_THREADS_AT_IMPORT = _native_threads()


def tensorflow_started() -> bool:
    """Whether TensorFlow's runtime already runs in this process (eager context or a session's
    thread pools): a forked child would hang on its pools."""
    from tensorflow.python.eager import context

    eager = context.context_safe()
    return (
        eager is not None and eager._context_handle is not None
    ) or _native_threads() > _NATIVE_THREADS_AT_IMPORT


class ParallelDagRunner(LocalDagRunner):
    """LocalDagRunner with each node in a child process, up to `workers` at once."""

    def __init__(self, workers: int):
        super().__init__()
        self._workers = workers

    def forks(self) -> bool:
        """Whether a run forks: with more than one worker, from a process TensorFlow does not
        run in yet. Otherwise LocalDagRunner's loop runs every node in this process."""
        return self._workers > 1 and not tensorflow_started()

    def run_with_ir(
        self,
        pipeline: pipeline_pb2.Pipeline,
        run_options: pipeline_pb2.RunOptions | None = None,
    ) -> None:
        if run_options is not None or not self.forks():
            if self._workers > 1:
                logging.warning(
                    "The components run one after the other in this process (LocalDagRunner): %s.",
                    "a partial run"
                    if run_options is not None
                    else "TensorFlow already runs in it, so it cannot fork safely",
                )
            return super().run_with_ir(pipeline, run_options)
        runtime_parameter_utils.substitute_runtime_parameter(
            pipeline,
            {constants.PIPELINE_RUN_ID_PARAMETER_NAME: datetime.datetime.now().isoformat()},
        )
        deployment_config = runner_utils.extract_local_deployment_config(pipeline)
        connection_config = getattr(
            deployment_config.metadata_connection_config,
            deployment_config.metadata_connection_config.WhichOneof("connection_config"),
        )
        nodes = {
            node.pipeline_node.node_info.id: node.pipeline_node
            for node in pipeline.nodes
            if not node.pipeline_node.execution_options.HasField("skip")
        }

        def launch(node_id: str) -> None:
            logging.info("Component %s is running.", node_id)
            launcher.Launcher(
                pipeline_node=nodes[node_id],
                mlmd_connection=metadata.Metadata(connection_config),
                pipeline_info=pipeline.pipeline_info,
                pipeline_runtime_spec=pipeline.runtime_spec,
                executor_spec=runner_utils.extract_executor_spec(deployment_config, node_id),
                custom_driver_spec=runner_utils.extract_custom_driver_spec(
                    deployment_config, node_id
                ),
            ).launch()
            logging.info("Component %s is finished.", node_id)

        logging.info("Running up to %d components at once, each in a child process.", self._workers)
        schedule(
            {node_id: set(node.upstream_nodes) for node_id, node in nodes.items()},
            launch,
            self._workers,
        )


def schedule(upstream: dict[str, set[str]], launch: Callable[[str], None], workers: int) -> None:
    """Calls launch(node id) in a forked child for every node once its `upstream` nodes are
    done, up to `workers` at once, in `upstream`'s (topological) order among the ready ones;
    raises the first failure (the child's exception) once the running children have ended."""
    context = multiprocessing.get_context("fork")
    running: dict[int, tuple[str, multiprocessing.Process, multiprocessing.connection.Connection]]
    running, done = {}, set()
    error: BaseException | None = None
    try:
        while True:
            if error is None:
                for node_id, needs in upstream.items():
                    if len(running) >= workers:
                        break
                    started = {name for name, _, _ in running.values()}
                    if node_id not in done and node_id not in started and needs <= done:
                        receiver, sender = context.Pipe(duplex=False)
                        child = context.Process(
                            target=_run_child,
                            args=(launch, node_id, os.getpid(), sender),
                            name=node_id,
                        )
                        child.start()
                        # The child makes its own process group too; whichever comes first
                        # wins, so _stop never misses a child that has not made it yet.
                        with contextlib.suppress(ProcessLookupError, PermissionError):
                            os.setpgid(child.pid, child.pid)
                        sender.close()
                        running[child.sentinel] = node_id, child, receiver
            if not running:
                break
            for sentinel in multiprocessing.connection.wait(list(running)):
                node_id, child, receiver = running.pop(sentinel)
                failure = _failure(node_id, child, receiver)
                done.add(node_id)
                if error is None:
                    error = failure
    finally:  # the parent is stopping (Ctrl-C, an error here): its children stop with it
        _stop([child for _, child, _ in running.values()])
    if error is not None:
        raise error
    if not_run := set(upstream) - done:  # an upstream node that is not in the graph
        raise RuntimeError(f"Components never ready to run: {', '.join(sorted(not_run))}.")


def _stop(children: list[multiprocessing.Process]) -> None:
    """Ends each child's process group (the child and what it started: the servability
    check's server, Beam's worker processes): SIGTERM, then SIGKILL after STOP_GRACE_S."""
    for signal_number in (signal.SIGTERM, signal.SIGKILL):
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal_number)
        for child in children:
            child.join(STOP_GRACE_S)
        children = [child for child in children if child.is_alive()]


def _run_child(launch: Callable[[str], None], node_id: str, parent: int, sender) -> None:
    """A child's body, in a process group of its own (so that the parent can stop what it
    starts too): launch the node; send nothing on success, else its exception, or a
    RuntimeError with its text when it would not arrive whole."""
    ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)
    os.setpgid(0, 0)
    try:
        launch(node_id)
    except BaseException as failure:
        logging.exception("Component %s failed.", node_id)
        sender.send_bytes(_message(node_id, failure))
        raise SystemExit(1) from None


def _message(node_id: str, failure: BaseException) -> bytes:
    """`failure` pickled, as the parent will rebuild it; a RuntimeError with its text when it
    does not pickle, does not rebuild (an exception whose __init__ takes other arguments than
    its message), or exceeds MAX_MESSAGE_BYTES (the parent reads a child's message only once
    the child has ended, so the message must fit the pipe's buffer)."""
    try:
        message = pickle.dumps(failure)
        pickle.loads(message)
    except Exception:
        message = b""
    if not message or len(message) > MAX_MESSAGE_BYTES:
        text = "".join(traceback.format_exception_only(type(failure), failure))
        message = pickle.dumps(RuntimeError(f"{node_id} failed: {text[-MAX_MESSAGE_BYTES // 2 :]}"))
    return message


def _failure(node_id: str, child: multiprocessing.Process, receiver) -> BaseException | None:
    """The exception a finished child sent, or one saying how it ended when it sent none."""
    child.join()
    try:
        failure = pickle.loads(receiver.recv_bytes())
    except EOFError:  # the child sent nothing: it succeeded, or died before it could send
        failure = None
    receiver.close()
    if failure is None and child.exitcode != 0:
        how = (
            f"was killed by signal {-child.exitcode}"
            if child.exitcode < 0
            else f"exited with code {child.exitcode}"
        )
        failure = RuntimeError(f"Component {node_id}'s process {how}.")
    return failure
