"""create_pipeline's graph for the configurations a user picks: which nodes exist, with which
ids, and what each model's Transform is told (built, not run)."""

import json

import pytest

from pipeline import node_ids
from pipeline.config import SAMPLE_DATA_DIR, PipelineConfig
from pipeline.pipeline import create_pipeline


def _nodes(**config) -> dict:
    pipeline = create_pipeline(PipelineConfig(data=str(SAMPLE_DATA_DIR), **config))
    return {component.id: component for component in pipeline.components}


def _custom_config(transform) -> dict:
    value = transform.exec_properties["custom_config"]
    return json.loads(value) if isinstance(value, str) else value


def test_the_default_run_trains_the_model_and_reports_the_baseline_beside_it():
    nodes = _nodes()
    models = (node_ids.MODEL_NODES, node_ids.BASELINE_NODES)
    for ids in models:
        assert {ids.transform, ids.trainer} <= set(nodes)
    model = node_ids.MODEL_NODES
    assert {model.last_pushed, model.evaluator, model.servability_gate, model.pusher} <= set(nodes)
    # The baseline is reported, not pushed, unless push_baseline.
    assert node_ids.BASELINE_NODES.pusher not in nodes
    assert node_ids.report_evaluator("holdout") in nodes
    assert _custom_config(nodes[node_ids.TRANSFORM])["ngrams"] is False
    assert _custom_config(nodes[node_ids.BASELINE_TRANSFORM])["ngrams"] is True


def test_the_wide_model_without_baseline_has_one_branch_whose_transform_adds_ngrams():
    nodes = _nodes(model="bilstm2_wide", baseline=False)
    assert not [node for node in nodes if node.startswith("baseline_")]
    assert _custom_config(nodes[node_ids.TRANSFORM])["ngrams"] is True
    assert nodes[node_ids.MODEL_NODES.trainer].exec_properties["custom_config"]


@pytest.mark.parametrize("push_baseline", [False, True])
def test_push_baseline_adds_the_baselines_own_gates_and_pusher(push_baseline):
    nodes = _nodes(push_baseline=push_baseline)
    ids = node_ids.BASELINE_NODES
    gates = {ids.last_pushed, ids.evaluator, ids.servability_gate, ids.pusher}
    assert (gates <= set(nodes)) == push_baseline
    assert not (gates & set(nodes)) or push_baseline


def test_every_node_id_names_a_node_of_the_graph(tmp_path):
    """The ids the run log, summary and report look executions up by are the graph's own."""
    (tmp_path / "score.csv").write_text("title,description\n")
    nodes = _nodes(push_baseline=True, score=str(tmp_path))
    constants = {
        value for name, value in vars(node_ids).items() if name.isupper() and isinstance(value, str)
    }
    pushes = {
        getattr(ids, field)
        for ids in (node_ids.MODEL_NODES, node_ids.BASELINE_NODES)
        for field in (
            "transform",
            "trainer",
            "last_pushed",
            "evaluator",
            "servability_gate",
            "pusher",
        )
    }
    assert constants | pushes | {node_ids.report_evaluator("holdout")} <= set(nodes)
