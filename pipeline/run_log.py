"""What `agnews run` prints while it runs: one line per component as it finishes (cached or
run, wall and CPU seconds, the figure that matters), Keras's epoch lines, then the summary and
the run's profile. Everything the libraries log (TFX, Beam, TFT, TFMA, TensorFlow's C++
warnings) goes to a log file in the run's directory instead, which the summary names;
`--verbose` prints it all as well.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import functools
import logging
import os
import re
import resource
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from absl import logging as absl_logging

from components.artifacts import (
    ACCEPTED,
    BLESSED_PROPERTY,
    CPU_SECONDS_PROPERTY,
    EPOCH_SECONDS_KEY,
    PUSHED_PROPERTY,
    PUSHED_VERSION_PROPERTY,
    read_history,
    read_summary,
    rejected_counts,
)
from pipeline import metadata, node_ids

LOGS_DIR_NAME = "logs"  # <run dir>/logs/run-<UTC time>.log
_RUNNING = re.compile(r"Component (\S+) is running\.")
_FINISHED = re.compile(r"Component (\S+) is finished\.")


def cpu_seconds() -> float:
    """CPU seconds of this process (all its threads) and of its child processes that ended:
    Beam's worker processes and the servability check's server count too."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


@dataclasses.dataclass
class RunLog:
    """Where the libraries' logs went, and the run's wall and CPU seconds so far."""

    path: str
    started: float = dataclasses.field(default_factory=time.monotonic)
    started_cpu: float = dataclasses.field(default_factory=cpu_seconds)

    def seconds(self) -> tuple[float, float]:
        """(wall, CPU) seconds since the run started."""
        return time.monotonic() - self.started, cpu_seconds() - self.started_cpu


class _ComponentLines(logging.Handler):
    """Prints a line when TFX's LocalDagRunner logs that a component finished, and records the
    CPU seconds it took on its execution in ML Metadata."""

    def __init__(self, describe: Callable[[str], str], record_cpu: Callable[[str, float], None]):
        super().__init__(logging.INFO)
        self._describe, self._record_cpu = describe, record_cpu
        self._started: dict[str, tuple[float, float]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if started := _RUNNING.fullmatch(message):
            self._started[started[1]] = time.monotonic(), cpu_seconds()
        elif finished := _FINISHED.fullmatch(message):
            node = finished[1]
            start, start_cpu = self._started.pop(node, (time.monotonic(), cpu_seconds()))
            seconds, cpu = time.monotonic() - start, cpu_seconds() - start_cpu
            try:  # a progress line must never stop the run
                self._record_cpu(node, cpu)
                line = self._describe(node)
            except Exception as error:
                line = f"(no summary: {error})"
            sys.stdout.write(f"  {node:<26} {seconds:6.1f} s {cpu:6.1f} s CPU  {line}\n")
            sys.stdout.flush()


def training_seconds(store, pipeline_name: str, run_id: int) -> list[float]:
    """Each epoch's wall seconds of the model's Trainer in run `run_id`; [] when it did not
    train in that run (cached or skipped)."""
    trainer = node_ids.MODEL_NODES.trainer
    execution = metadata.execution_in_run(store, pipeline_name, run_id, trainer)
    if execution is None or metadata.outcome(execution) != "ran":
        return []
    model_run = metadata.output_in_run(store, pipeline_name, run_id, trainer, "ModelRun")
    return read_history(model_run.uri).get(EPOCH_SECONDS_KEY, []) if model_run else []


def profile_line(log: RunLog, metadata_address: str, pipeline_name: str) -> str:
    """The run's wall and CPU seconds so far, and the share of them the model's epochs took."""
    wall, cpu = log.seconds()
    store = metadata.open_store(metadata_address)
    run_id = metadata.latest_run_id(store, pipeline_name)
    epochs = training_seconds(store, pipeline_name, run_id) if run_id else []
    training = (
        f"the model's training epochs ({len(epochs)}) took {sum(epochs):.1f} s, "
        f"{sum(epochs) / wall:.0%} of the run"
        if epochs
        else "no model trained"
    )
    return (
        f"Profile: {wall:.1f} s, {cpu:.1f} s CPU ({cpu / wall:.0%} of one core); {training}. "
        "Each component's: the lines above and the report."
    )


def record_cpu_seconds(
    metadata_address: str, pipeline_name: str, node: str, seconds: float
) -> None:
    """Sets CPU_SECONDS_PROPERTY on the node's execution in the newest run."""
    store = metadata.open_store(metadata_address)
    run_id = metadata.latest_run_id(store, pipeline_name)
    execution = metadata.execution_in_run(store, pipeline_name, run_id, node) if run_id else None
    if execution is not None:
        execution.custom_properties[CPU_SECONDS_PROPERTY].double_value = seconds
        store.put_executions([execution])


def gates(node_id) -> set[str]:
    """`node_id(nodes)` of the model's and the baseline's gate nodes, e.g. both Evaluators' ids."""
    return {node_id(node_ids.MODEL_NODES), node_id(node_ids.BASELINE_NODES)}


def describe_component(metadata_address: str, run_dir: str, pipeline_name: str, node: str) -> str:
    """`cached`, `skipped` or `ran`, and what the node's output says, from ML Metadata."""
    store = metadata.open_store(metadata_address)
    run_id = metadata.latest_run_id(store, pipeline_name)
    execution = metadata.execution_in_run(store, pipeline_name, run_id, node) if run_id else None
    if execution is None:
        return ""
    state = metadata.outcome(execution)
    if state == "skipped":
        return (
            "skipped ("
            + (
                "first span: no earlier span to compare with"
                if node in (node_ids.DISTRIBUTION_VALIDATOR, node_ids.DRIFT_GATE)
                else "nothing new to train on"
            )
            + ")"
        )
    figure = _figure(store, run_dir, pipeline_name, run_id, node)
    return f"{state:<6} {figure}".rstrip()


def _figure(store, run_dir: str, pipeline_name: str, run_id: int, node: str) -> str:
    """The figure that matters in what `node` output in run `run_id`; "" when there is none."""

    def output(type_name: str):
        return metadata.output_in_run(store, pipeline_name, run_id, node, type_name)

    figure = ""
    if node == node_ids.EXAMPLE_GEN and (examples := output("Examples")):
        rows = read_summary(examples.uri)
        figure = (
            f"span {metadata.span(examples)}: {rows.get(ACCEPTED, 0)} rows accepted, "
            f"{sum(rejected_counts(rows).values())} rejected"
        )
    elif node == node_ids.ANOMALIES_GATE:
        figure = "no schema anomalies"
    elif node == node_ids.DRIFT_GATE:
        from pipeline import report

        cache_dir = Path(run_dir).resolve() / report.REPORT_DIR_NAME / report.DRIFT_DIR_NAME
        figure = "; ".join(report.cached_drift(store, pipeline_name, run_id, cache_dir))
    elif node == node_ids.SPAN_WINDOW:
        spans = sorted(
            metadata.span(a)
            for a in metadata.outputs_in_run(store, pipeline_name, run_id, node, "Examples")
        )
        figure = f"window: spans {', '.join(map(str, spans))}" if spans else "nothing new"
    elif node in node_ids.TRAINERS:
        if model_run := output("ModelRun"):
            figure = f"{len(read_history(model_run.uri).get('loss', []))} epochs"
    elif node in gates(lambda nodes: nodes.evaluator) and (blessing := output("ModelBlessing")):
        figure = (
            "blessed" if blessing.custom_properties[BLESSED_PROPERTY].int_value else "NOT blessed"
        )
    elif node in gates(lambda nodes: nodes.pusher) and (pushed := output("PushedModel")):
        figure = (
            f"pushed version {pushed.custom_properties[PUSHED_VERSION_PROPERTY].string_value}"
            if pushed.custom_properties[PUSHED_PROPERTY].int_value
            else "not pushed"
        )
    return figure


@contextlib.contextmanager
def quiet_run(
    run_dir: str, metadata_address: str, pipeline_name: str, verbose: bool = False
) -> Iterator[RunLog]:
    """Sends the libraries' logs (Python logging and file descriptor 2, where TensorFlow's C++
    logs write) to `<run_dir>/logs/run-<time>.log` while the block runs, and prints a line per
    finished component on stdout (its CPU seconds recorded in ML Metadata); yields the log
    file's path and the run's clocks."""
    log_dir = os.path.join(run_dir, LOGS_DIR_NAME)
    os.makedirs(log_dir, exist_ok=True)
    path = os.path.join(
        log_dir, datetime.datetime.now(datetime.timezone.utc).strftime("run-%Y%m%dT%H%M%SZ.log")
    )
    absl_logger, root = logging.getLogger("absl"), logging.getLogger()
    lines = _ComponentLines(
        functools.partial(describe_component, metadata_address, run_dir, pipeline_name),
        functools.partial(record_cpu_seconds, metadata_address, pipeline_name),
    )
    # Through absl's verbosity flag, not the logger's level: TensorFlow resets the logger to
    # the flag's value (autotrackable.py silences absl around each save).
    saved_verbosity = absl_logging.get_verbosity()
    with open(path, "ab", buffering=0) as log:
        # A text wrapper the handler writes through for the whole run (until the `finally`
        # below), so no `with` of its own; closefd=False: the descriptor is `log`'s to close.
        file_handler = logging.StreamHandler(open(log.fileno(), "w", closefd=False))  # noqa: SIM115
        file_handler.setFormatter(
            # processName: the component's id in a component's own process (parallel_runner).
            logging.Formatter("%(asctime)s %(processName)s %(levelname)s %(name)s: %(message)s")
        )
        console = [] if verbose else [h for h in root.handlers if _is_console(h)]
        for handler in console:
            root.removeHandler(handler)
        root.addHandler(file_handler)
        absl_logger.addHandler(lines)
        absl_logging.set_verbosity(absl_logging.INFO)
        sys.stderr.flush()
        saved_stderr = os.dup(2)
        if not verbose:
            os.dup2(log.fileno(), 2)
        try:
            yield RunLog(path)
        finally:
            sys.stderr.flush()
            os.dup2(saved_stderr, 2)
            os.close(saved_stderr)
            absl_logger.removeHandler(lines)
            absl_logging.set_verbosity(saved_verbosity)
            root.removeHandler(file_handler)
            file_handler.flush()
            for handler in console:
                root.addHandler(handler)


def _is_console(handler: logging.Handler) -> bool:
    return isinstance(handler, logging.StreamHandler) and getattr(handler, "stream", None) in (
        sys.stderr,
        sys.stdout,
        sys.__stderr__,
    )
