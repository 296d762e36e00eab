"""ParallelDagRunner's scheduling, on a graph of the pipeline's shape whose nodes run in real
forked children that record when they ran (the real pipeline runs under it in first_run:
tests/integration/pipeline/test_pipeline_e2e.py checks that two of its components overlapped)."""

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from components.rows import IngestError
from pipeline.parallel_runner import schedule

# ExampleGen feeds two Transforms (the model's and the baseline's), each feeding a Trainer,
# each Trainer an Evaluator; a Pusher waits for the model's Evaluator.
GRAPH = {
    "ExampleGen": set(),
    "Transform": {"ExampleGen"},
    "baseline_transform": {"ExampleGen"},
    "Trainer": {"Transform"},
    "baseline_trainer": {"baseline_transform"},
    "Evaluator": {"Trainer"},
    "baseline_evaluator": {"baseline_trainer"},
    "Pusher": {"Evaluator"},
}


@pytest.fixture(autouse=True)
def _bounded():
    """A scheduling bug hangs rather than fails: each test gets a minute."""

    def timed_out(*_):
        raise TimeoutError("schedule did not return within 60 s")

    previous = signal.signal(signal.SIGALRM, timed_out)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


class _TwoArguments(Exception):
    """Pickles, but does not rebuild from its pickle (as TFX's _ExecutionFailedError)."""

    def __init__(self, message: str, detail: object):
        super().__init__(message)
        self.detail = detail


class _Recorder:
    """A launch function: in the child, sleeps a little and writes the node's start and end
    (and process id) to a file; fails, or dies, as a node named for it."""

    def __init__(
        self,
        directory: Path,
        fail: str | None = None,
        die: str | None = None,
        failure: Exception | None = None,
    ):
        self.directory, self._fail, self._die = directory, fail, die
        self._failure = failure or IngestError(f"{fail} failed")

    def __call__(self, node_id: str) -> None:
        started = time.time()
        time.sleep(0.2)
        (self.directory / node_id).write_text(f"{started} {time.time()} {os.getpid()}")
        if node_id == self._fail:
            raise self._failure
        if node_id == self._die:
            os.kill(os.getpid(), signal.SIGKILL)

    def spans(self) -> dict[str, tuple[float, float, int]]:
        spans = {}
        for path in self.directory.iterdir():
            start, end, pid = path.read_text().split()
            spans[path.name] = float(start), float(end), int(pid)
        return spans

    def overlap(self, a: str, b: str) -> bool:
        spans = self.spans()
        return spans[a][0] < spans[b][1] and spans[b][0] < spans[a][1]


def test_every_node_runs_once_in_a_child_after_its_upstream_nodes(tmp_path):
    launch = _Recorder(tmp_path)
    schedule(GRAPH, launch, workers=2)
    spans = launch.spans()
    assert set(spans) == set(GRAPH)
    assert os.getpid() not in {pid for _, _, pid in spans.values()}
    assert len({pid for _, _, pid in spans.values()}) == len(GRAPH)  # a process per node
    for node_id, upstream in GRAPH.items():
        for before in upstream:
            assert spans[before][1] <= spans[node_id][0], (before, node_id)


def test_independent_nodes_run_at_once_and_one_worker_runs_one_at_a_time(tmp_path):
    (two := tmp_path / "two").mkdir()
    launch = _Recorder(two)
    schedule(GRAPH, launch, workers=2)
    assert launch.overlap("Transform", "baseline_transform")
    assert launch.overlap("Trainer", "baseline_trainer")

    (one := tmp_path / "one").mkdir()
    launch = _Recorder(one)
    schedule(GRAPH, launch, workers=1)
    assert not any(launch.overlap(a, b) for a in GRAPH for b in GRAPH if a < b)


def test_a_failure_starts_nothing_more_and_its_exception_reaches_the_parent(tmp_path):
    """The child's own exception type, so `agnews run` tells a data error from a crash."""
    launch = _Recorder(tmp_path, fail="Transform")
    with pytest.raises(IngestError, match="Transform failed"):
        schedule(GRAPH, launch, workers=2)
    ran = set(launch.spans())
    assert "Trainer" not in ran and "Evaluator" not in ran and "Pusher" not in ran
    assert "ExampleGen" in ran


def test_a_child_that_dies_without_a_word_fails_the_run_naming_it(tmp_path):
    launch = _Recorder(tmp_path, die="Trainer")
    with pytest.raises(RuntimeError, match="Component Trainer's process was killed by signal 9"):
        schedule(GRAPH, launch, workers=2)
    assert "Evaluator" not in launch.spans()


@pytest.mark.parametrize(
    "failure",
    [
        RuntimeError("x" * 200_000),  # more than a pipe holds before the parent reads it
        _TwoArguments("Trainer failed", detail=object()),
    ],
    ids=["larger than a pipe", "not rebuildable"],
)
def test_a_failure_that_cannot_arrive_whole_arrives_as_its_text(tmp_path, failure):
    """Neither hangs the run nor hides the failure behind an error of the runner's own; the
    node running beside it finishes."""
    launch = _Recorder(tmp_path, fail="Transform", failure=failure)
    with pytest.raises(RuntimeError, match="Transform failed: ") as raised:
        schedule(GRAPH, launch, workers=2)
    assert type(failure).__name__ in str(raised.value) or "xxxx" in str(raised.value)
    assert "baseline_transform" in launch.spans()


def test_a_node_whose_upstream_is_not_in_the_graph_fails_the_run(tmp_path):
    graph = {**GRAPH, "Pusher": {"Evaluator", "a_skipped_node"}}
    with pytest.raises(RuntimeError, match="never ready to run: Pusher"):
        schedule(graph, _Recorder(tmp_path), workers=2)


def test_a_stopped_run_stops_each_running_node_and_what_it_started(tmp_path):
    """As Ctrl-C does: the parent's wait is interrupted; each child's process group (the child
    and the process it started) is gone when schedule returns."""

    def launch(node_id: str) -> None:
        started = subprocess.Popen(["sleep", "300"])
        (tmp_path / node_id).write_text(f"{os.getpid()} {started.pid}")
        started.wait()

    def interrupt(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGALRM, interrupt)
    signal.alarm(3)
    graph = {"Transform": set(), "baseline_transform": set()}
    with pytest.raises(KeyboardInterrupt):
        schedule(graph, launch, workers=2)
    pids = [int(pid) for node in graph for pid in (tmp_path / node).read_text().split()]
    assert len(pids) == 4
    assert not [pid for pid in pids if _alive(pid)]


def _alive(pid: int) -> bool:
    """Whether the process runs (a zombie, dead but not yet reaped by init, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"
