"""pipeline.metadata on a real ML Metadata store laid out as TFX lays out runs: a `pipeline`
context, one `node` context per node and a `pipeline_run` context per run, each execution
associated with its node's and its run's."""

from ml_metadata.proto import metadata_store_pb2

from components.artifacts import PUSHED_PROPERTY
from pipeline import metadata


def _store_with_runs(path, runs: list[list[str]]):
    """A sqlite store holding pipeline `p` with one run per entry of `runs` (the nodes that ran
    in it, in order)."""
    store = metadata.open_store(str(path))
    type_ids = {
        name: store.put_context_type(metadata_store_pb2.ContextType(name=name))
        for name in ("pipeline", "node", metadata.RUN_CONTEXT_TYPE)
    }
    execution_type = store.put_execution_type(metadata_store_pb2.ExecutionType(name="component"))

    def context(type_name: str, name: str) -> int:
        found = store.get_context_by_type_and_name(type_name, name)
        if found:
            return found.id
        [made] = store.put_contexts(
            [metadata_store_pb2.Context(type_id=type_ids[type_name], name=name)]
        )
        return made

    pipeline = context("pipeline", "p")
    run_ids = []
    for number, nodes in enumerate(runs):
        run = context(metadata.RUN_CONTEXT_TYPE, f"run-{number}")
        run_ids.append(run)
        for node in nodes:
            [execution] = store.put_executions(
                [metadata_store_pb2.Execution(type_id=execution_type)]
            )
            store.put_attributions_and_associations(
                [],
                [
                    metadata_store_pb2.Association(context_id=c, execution_id=execution)
                    for c in (pipeline, context("node", f"p.{node}"), run)
                ],
            )
    return store, run_ids


def test_latest_run_id_is_the_newest_run_and_the_newest_with_the_node(tmp_path):
    store, runs = _store_with_runs(
        tmp_path / "m.sqlite", [["Gen", "Trainer"], ["Gen", "Trainer"], ["Gen"], ["Gen"]]
    )
    assert metadata.run_ids(store, "p") == runs
    assert metadata.latest_run_id(store, "p") == runs[-1]
    assert metadata.run_ids(store, "p", with_node="Trainer") == runs[:2]
    assert metadata.latest_run_id(store, "p", with_node="Trainer") == runs[1]


def test_latest_run_id_is_none_before_any_run_and_for_an_unknown_node(tmp_path):
    store, _ = _store_with_runs(tmp_path / "m.sqlite", [])
    assert metadata.latest_run_id(store, "p") is None
    assert metadata.latest_run_id(store, "other") is None
    assert metadata.latest_run_id(store, "p", with_node="Trainer") is None


def test_a_nodes_execution_in_a_run_is_its_own_in_that_run(tmp_path):
    store, runs = _store_with_runs(tmp_path / "m.sqlite", [["Gen", "Trainer"], ["Gen"]])
    by_node = metadata.executions_in_run(store, "p", runs[0])
    assert list(by_node) == ["Gen", "Trainer"]
    assert metadata.execution_in_run(store, "p", runs[0], "Trainer").id == by_node["Trainer"].id
    assert metadata.execution_in_run(store, "p", runs[1], "Trainer") is None
    assert metadata.execution_in_run(store, "p", runs[1], "Gen").id > by_node["Gen"].id
    assert metadata.execution_in_run(store, "p", runs[1], "Nope") is None


def _output(
    store, execution_type: int, contexts: list[int], type_name="Stats", pushed=0, **properties: str
) -> int:
    """An artifact of `type_name` (with Pusher's `pushed` property) output by a new execution
    (with `properties`) in `contexts`."""
    artifact_type = store.put_artifact_type(metadata_store_pb2.ArtifactType(name=type_name))
    execution = metadata_store_pb2.Execution(type_id=execution_type)
    for name, value in properties.items():
        execution.properties[name].string_value = value
    artifact = metadata_store_pb2.Artifact(type_id=artifact_type)
    artifact.custom_properties[PUSHED_PROPERTY].int_value = pushed
    [artifact] = store.put_artifacts([artifact])
    [execution_id] = store.put_executions([execution])
    store.put_events(
        [
            metadata_store_pb2.Event(
                artifact_id=artifact,
                execution_id=execution_id,
                type=metadata_store_pb2.Event.OUTPUT,
            )
        ]
    )
    store.put_attributions_and_associations(
        [metadata_store_pb2.Attribution(context_id=c, artifact_id=artifact) for c in contexts],
        [metadata_store_pb2.Association(context_id=c, execution_id=execution_id) for c in contexts],
    )
    return artifact


def test_an_artifacts_run_and_producer_under_both_of_tfxs_layouts(tmp_path):
    """Local and Kubeflow runs name the node in a `node` context; Airflow's legacy drivers in
    the execution's component_id property, and call the run context `run`."""
    store, runs = _store_with_runs(tmp_path / "m.sqlite", [["Gen"], ["Gen"]])
    node_type = store.get_context_type(metadata.NODE_CONTEXT_TYPE).id
    [node_id] = store.put_contexts(
        [metadata_store_pb2.Context(type_id=node_type, name="p.StatisticsGen")]
    )
    ir_execution_type = store.put_execution_type(metadata_store_pb2.ExecutionType(name="ir"))
    ir = _output(store, ir_execution_type, [node_id, runs[1]])
    assert metadata.run_of_artifact(store, ir).id == runs[1]
    assert metadata.producing_node(store, ir) == "StatisticsGen"

    legacy_execution_type = store.put_execution_type(
        metadata_store_pb2.ExecutionType(
            name="legacy",
            properties={metadata.LEGACY_NODE_ID_PROPERTY: metadata_store_pb2.STRING},
        )
    )
    run_type = store.put_context_type(
        metadata_store_pb2.ContextType(name=metadata.LEGACY_RUN_CONTEXT_TYPE)
    )
    [legacy_run] = store.put_contexts([metadata_store_pb2.Context(type_id=run_type, name="p.r")])
    legacy = _output(
        store,
        legacy_execution_type,
        [legacy_run],
        **{metadata.LEGACY_NODE_ID_PROPERTY: "StatisticsGen"},
    )
    assert metadata.run_of_artifact(store, legacy).id == legacy_run
    assert metadata.producing_node(store, legacy) == "StatisticsGen"

    orphan = _output(store, ir_execution_type, [])
    assert metadata.run_of_artifact(store, orphan) is None

    # Pusher's pushes, under both layouts; a push that did not happen is none.
    pipeline = store.get_context_by_type_and_name("pipeline", "p").id
    [pusher_node] = store.put_contexts(
        [metadata_store_pb2.Context(type_id=node_type, name="p.Pusher")]
    )
    pushed = [
        _output(store, ir_execution_type, [pipeline, pusher_node, runs[0]], "PushedModel", 1),
        _output(
            store,
            legacy_execution_type,
            [pipeline, legacy_run],
            "PushedModel",
            1,
            **{metadata.LEGACY_NODE_ID_PROPERTY: "Pusher"},
        ),
    ]
    _output(store, ir_execution_type, [pipeline, pusher_node, runs[1]], "PushedModel", 0)
    assert [a.id for a in metadata.pushes(store, "p", "Pusher")] == pushed
    assert metadata.pushes(store, "p", "baseline_pusher") == []
