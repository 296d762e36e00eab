"""ParallelDagRunner's scheduling rules, on a graph of the pipeline's shape whose nodes record
when they ran (the real pipeline runs under it in every integration test's first_run)."""

import threading
import time

import pytest
from tfx.proto.orchestration import pipeline_pb2

from pipeline.parallel_runner import _schedule


def _node(node_type: str, *upstream: str) -> pipeline_pb2.PipelineNode:
    node = pipeline_pb2.PipelineNode()
    node.node_info.type.name = node_type
    node.upstream_nodes.extend(upstream)
    return node


# ExampleGen feeds two Transforms (the model's and the baseline's), each feeding a Trainer,
# each Trainer an Evaluator; a Pusher waits for the model's Evaluator.
GRAPH = {
    "ExampleGen": _node("ExampleGen"),
    "Transform": _node("Transform", "ExampleGen"),
    "baseline_transform": _node("Transform", "ExampleGen"),
    "Trainer": _node("Trainer", "Transform"),
    "baseline_trainer": _node("Trainer", "baseline_transform"),
    "Evaluator": _node("Evaluator", "Trainer"),
    "baseline_evaluator": _node("Evaluator", "baseline_trainer"),
    "Pusher": _node("Pusher", "Evaluator"),
}


class _Recorder:
    """A launch function that sleeps a little and records each node's start and end."""

    def __init__(self, fail: str | None = None):
        self.spans: dict[str, tuple[float, float]] = {}
        self._fail, self._lock = fail, threading.Lock()

    def __call__(self, node_id: str) -> None:
        started = time.monotonic()
        time.sleep(0.05)
        with self._lock:
            self.spans[node_id] = (started, time.monotonic())
        if node_id == self._fail:
            raise RuntimeError(f"{node_id} failed")

    def overlap(self, a: str, b: str) -> bool:
        (a_start, a_end), (b_start, b_end) = self.spans[a], self.spans[b]
        return a_start < b_end and b_start < a_end


def test_every_node_runs_once_after_its_upstream_nodes():
    launch = _Recorder()
    _schedule(GRAPH, launch, workers=2)
    assert set(launch.spans) == set(GRAPH)
    for node_id, node in GRAPH.items():
        for upstream in node.upstream_nodes:
            assert launch.spans[upstream][1] <= launch.spans[node_id][0], (upstream, node_id)


def test_independent_nodes_run_at_once_but_never_two_of_one_type():
    launch = _Recorder()
    _schedule(GRAPH, launch, workers=2)
    same_type = [
        (a, b)
        for a in GRAPH
        for b in GRAPH
        if a < b and GRAPH[a].node_info.type.name == GRAPH[b].node_info.type.name
    ]
    assert same_type and not any(launch.overlap(a, b) for a, b in same_type)
    assert any(launch.overlap(a, b) for a in GRAPH for b in GRAPH if a < b)


def test_one_worker_runs_one_node_at_a_time():
    launch = _Recorder()
    _schedule(GRAPH, launch, workers=1)
    assert not any(launch.overlap(a, b) for a in GRAPH for b in GRAPH if a < b)


def test_a_failure_starts_nothing_downstream_and_is_raised():
    launch = _Recorder(fail="Trainer")
    with pytest.raises(RuntimeError, match="Trainer failed"):
        _schedule(GRAPH, launch, workers=2)
    assert "Evaluator" not in launch.spans and "Pusher" not in launch.spans
