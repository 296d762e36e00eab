"""What `agnews run` prints while it runs: one line per component as it finishes (cached or
run, seconds, the figure that matters), Keras's epoch lines, then the summary. Everything the
libraries log (TFX, Beam, TFT, TFMA, TensorFlow's C++ warnings) goes to a log file in the
run's directory instead, which the summary names; `--verbose` prints it all as well.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from absl import logging as absl_logging

from components.artifacts import (
    ACCEPTED,
    BLESSED_PROPERTY,
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


class _ComponentLines(logging.Handler):
    """Prints a line when TFX's LocalDagRunner logs that a component finished."""

    def __init__(self, describe: Callable[[str], str], out):
        super().__init__(logging.INFO)
        self._describe, self._out, self._started = describe, out, {}

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if started := _RUNNING.fullmatch(message):
            self._started[started[1]] = time.monotonic()
        elif finished := _FINISHED.fullmatch(message):
            node = finished[1]
            seconds = time.monotonic() - self._started.pop(node, time.monotonic())
            try:
                line = self._describe(node)
            except Exception as error:  # a progress line must never stop the run
                line = f"(no summary: {error})"
            self._out.write(f"  {node:<26} {seconds:6.1f} s  {line}\n")
            self._out.flush()


def gates(node_id) -> set[str]:
    """`node_id(nodes)` of the model's and the baseline's gate nodes, e.g. both Evaluators' ids."""
    return {node_id(node_ids.MODEL_NODES), node_id(node_ids.BASELINE_NODES)}


def describe_component(metadata_path: str, pipeline_name: str, node: str) -> str:
    """`cached`, `skipped` or `ran`, and what the node's output says, from ML Metadata."""
    store = metadata.open_store(metadata_path)
    run_id = metadata.latest_run_id(store, pipeline_name)
    execution = metadata.execution_in_run(store, pipeline_name, run_id, node) if run_id else None
    if execution is None:
        return ""
    if metadata.skipped(execution):
        return (
            "skipped ("
            + (
                "first span: no earlier span to compare with"
                if node in (node_ids.DISTRIBUTION_VALIDATOR, node_ids.DRIFT_GATE)
                else "nothing new to train on"
            )
            + ")"
        )
    state = "cached" if execution.last_known_state == execution.CACHED else "ran"
    figure = _figure(store, metadata_path, pipeline_name, run_id, node)
    return f"{state:<6} {figure}".rstrip()


def _figure(store, metadata_path: str, pipeline_name: str, run_id: int, node: str) -> str:
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

        cache_dir = (
            Path(metadata_path).resolve().parent / report.REPORT_DIR_NAME / report.DRIFT_DIR_NAME
        )
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
def quiet_run(run_dir: str, describe: Callable[[str], str], verbose: bool = False) -> Iterator[str]:
    """Sends the libraries' logs (Python logging and file descriptor 2, where TensorFlow's C++
    logs write) to `<run_dir>/logs/run-<time>.log` while the block runs, and prints a line per
    finished component on stdout; yields the log file's path."""
    log_dir = os.path.join(run_dir, LOGS_DIR_NAME)
    os.makedirs(log_dir, exist_ok=True)
    path = os.path.join(
        log_dir, datetime.datetime.now(datetime.timezone.utc).strftime("run-%Y%m%dT%H%M%SZ.log")
    )
    absl_logger, root = logging.getLogger("absl"), logging.getLogger()
    lines = _ComponentLines(describe, sys.stdout)
    # Through absl's verbosity flag, not the logger's level: TensorFlow resets the logger to
    # the flag's value (autotrackable.py silences absl around each save).
    saved_verbosity = absl_logging.get_verbosity()
    with open(path, "ab", buffering=0) as log:
        # A text wrapper the handler writes through for the whole run (until the `finally`
        # below), so no `with` of its own; closefd=False: the descriptor is `log`'s to close.
        file_handler = logging.StreamHandler(open(log.fileno(), "w", closefd=False))  # noqa: SIM115
        file_handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
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
            yield path
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
