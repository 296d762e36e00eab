"""ML Metadata (a sqlite file or a server: metadata_connection), read with ml_metadata alone (no
TFX import), for the run summary, the report, the registry and the tests."""

from __future__ import annotations

from ml_metadata import errors
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from components.artifacts import PUSHED_PROPERTY
from pipeline import metadata_connection

RUN_CONTEXT_TYPE = "pipeline_run"  # TFX's context of one run of a pipeline
NODE_CONTEXT_TYPE = "node"  # TFX's context of one node of a pipeline, named PIPELINE.NODE_ID
# The same under TFX's legacy drivers (AirflowDagRunner's), which also record each execution's
# node id as its component_id property instead of in a "node" context.
LEGACY_RUN_CONTEXT_TYPE = "run"
LEGACY_NODE_ID_PROPERTY = "component_id"
# TFX associates every execution with its run, so the newest one in scope names the newest run;
# a few more are read in case a store holds executions outside any run (written by hand).
_NEWEST_EXECUTIONS = 10


def open_store(address: str) -> metadata_store.MetadataStore:
    """The store at `address`: a sqlite file's path or a mysql:// server (metadata_connection)."""
    try:
        return metadata_store.MetadataStore(metadata_connection.connection_config(address))
    except RuntimeError:  # all ml-metadata says of a server it cannot use: find out why
        metadata_connection.check(address)
        raise


def latest_output(
    store: metadata_store.MetadataStore, pipeline_name: str, node_id: str, type_name: str
):
    """The newest artifact of `type_name` around pipeline node `node_id` in MLMD, or None."""
    context = store.get_context_by_type_and_name(NODE_CONTEXT_TYPE, f"{pipeline_name}.{node_id}")
    if context is None:
        return None
    type_id = store.get_artifact_type(type_name).id
    artifacts = [a for a in store.get_artifacts_by_context(context.id) if a.type_id == type_id]
    return max(artifacts, key=lambda a: a.id) if artifacts else None


def _context_type_ids(store: metadata_store.MetadataStore, *names: str) -> set[int]:
    return {t.id for t in store.get_context_types() if t.name in names}


def run_of_artifact(store: metadata_store.MetadataStore, artifact_id: int):
    """The newest pipeline run context that `artifact_id` is in, under either layout (local and
    Kubeflow runs, or Airflow's), or None."""
    run_types = _context_type_ids(store, RUN_CONTEXT_TYPE, LEGACY_RUN_CONTEXT_TYPE)
    try:
        contexts = store.get_contexts_by_artifact(artifact_id)
    except errors.NotFoundError:  # what ml-metadata answers for an artifact in no context
        return None
    runs = [c for c in contexts if c.type_id in run_types]
    return max(runs, key=lambda c: c.id, default=None)


def producing_node(store: metadata_store.MetadataStore, artifact_id: int) -> str | None:
    """The id of the node whose execution output `artifact_id`, under either layout, or None."""
    producers = [
        e.execution_id
        for e in store.get_events_by_artifact_ids([artifact_id])
        if e.type == metadata_store_pb2.Event.OUTPUT
    ]
    if not producers:
        return None
    node_types = _context_type_ids(store, NODE_CONTEXT_TYPE)
    try:
        contexts = store.get_contexts_by_execution(producers[0])
    except errors.NotFoundError:
        contexts = []
    for context in contexts:
        if context.type_id in node_types:
            return context.name.rsplit(".", 1)[-1]
    (execution,) = store.get_executions_by_id(producers[:1])
    return execution.properties[LEGACY_NODE_ID_PROPERTY].string_value or None


def _scope(store: metadata_store.MetadataStore, pipeline_name: str, with_node: str | None):
    """The pipeline's context, or with `with_node` that node's."""
    return store.get_context_by_type_and_name(
        "pipeline" if with_node is None else NODE_CONTEXT_TYPE,
        pipeline_name if with_node is None else f"{pipeline_name}.{with_node}",
    )


def run_ids(
    store: metadata_store.MetadataStore, pipeline_name: str, with_node: str | None = None
) -> list[int]:
    """The pipeline runs (TFX's `pipeline_run` contexts) of `pipeline_name`, oldest first;
    with `with_node`, only those in which that node ran. Reads every run: for the newest alone,
    latest_run_id."""
    scope = _scope(store, pipeline_name, with_node)
    if scope is None:
        return []
    wanted = {e.id for e in store.get_executions_by_context(scope.id)}
    return sorted(
        run.id
        for run in store.get_contexts_by_type(RUN_CONTEXT_TYPE)
        if wanted & {e.id for e in store.get_executions_by_context(run.id)}
    )


def latest_run_id(
    store: metadata_store.MetadataStore, pipeline_name: str, with_node: str | None = None
) -> int | None:
    """The newest of run_ids(...), None before the first run. Found from the newest execution
    in scope, in a few queries however many runs the store holds: every component's summary
    line asks, and a pipeline run daily has hundreds of runs."""
    scope = _scope(store, pipeline_name, with_node)
    if scope is None:
        return None
    run_type_id = store.get_context_type(RUN_CONTEXT_TYPE).id
    newest_first = metadata_store.ListOptions(
        limit=_NEWEST_EXECUTIONS, order_by=metadata_store.OrderByField.ID, is_asc=False
    )
    for execution in store.get_executions_by_context(scope.id, list_options=newest_first):
        runs = [
            c.id for c in store.get_contexts_by_execution(execution.id) if c.type_id == run_type_id
        ]
        if runs:
            return max(runs)
    return None


def _last_in_run(store: metadata_store.MetadataStore, node, in_run: dict[int, object]):
    """The node context's last execution among `in_run` (a run's executions by id), or None."""
    executions = [in_run[e.id] for e in store.get_executions_by_context(node.id) if e.id in in_run]
    return max(executions, key=lambda e: e.id, default=None)


def execution_in_run(
    store: metadata_store.MetadataStore, pipeline_name: str, run_id: int, node_id: str
):
    """Node `node_id`'s execution in run `run_id` (its last, if several), or None."""
    node = store.get_context_by_type_and_name(NODE_CONTEXT_TYPE, f"{pipeline_name}.{node_id}")
    if node is None:
        return None
    return _last_in_run(store, node, {e.id: e for e in store.get_executions_by_context(run_id)})


def executions_in_run(
    store: metadata_store.MetadataStore, pipeline_name: str, run_id: int
) -> dict[str, metadata_store_pb2.Execution]:
    """Each node's (last) execution in run `run_id`, by node id, in the order they started."""
    prefix = f"{pipeline_name}."
    in_run = {e.id: e for e in store.get_executions_by_context(run_id)}
    found = {
        node.name[len(prefix) :]: execution
        for node in store.get_contexts_by_type(NODE_CONTEXT_TYPE)
        if node.name.startswith(prefix)
        for execution in [_last_in_run(store, node, in_run)]
        if execution is not None
    }
    return dict(
        sorted(found.items(), key=lambda item: (item[1].create_time_since_epoch, item[1].id))
    )


def outputs_in_run(
    store: metadata_store.MetadataStore,
    pipeline_name: str,
    run_id: int | None,
    node_id: str,
    type_name: str,
) -> list:
    """The artifacts of `type_name` that node `node_id` output (or reused from its cache) in
    pipeline run `run_id`: figures of one run are never mixed with another's."""
    execution = execution_in_run(store, pipeline_name, run_id, node_id) if run_id else None
    if execution is None:
        return []
    outputs = {
        event.artifact_id
        for event in store.get_events_by_execution_ids([execution.id])
        if event.type in (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.INTERNAL_OUTPUT)
    }
    type_id = store.get_artifact_type(type_name).id
    return sorted(
        (a for a in store.get_artifacts_by_id(list(outputs)) if a.type_id == type_id),
        key=lambda a: a.id,
    )


def output_in_run(
    store: metadata_store.MetadataStore,
    pipeline_name: str,
    run_id: int | None,
    node_id: str,
    type_name: str,
):
    """The newest of outputs_in_run(...), or None."""
    outputs = outputs_in_run(store, pipeline_name, run_id, node_id, type_name)
    return outputs[-1] if outputs else None


def span(artifact) -> int:
    """An Examples artifact's span (an ML Metadata Artifact or TFX's wrapper of one), as
    ExampleGen's driver records it: a custom property (the `span` property that TFX's resolver
    ops read stays 0 for FileBasedExampleGen's output)."""
    return getattr(artifact, "mlmd_artifact", artifact).custom_properties["span"].int_value


def skipped(execution) -> bool:
    """Whether TFX skipped the node for want of inputs (e.g. the drift gate on the first span,
    or the Trainer when there is nothing new): TFX records that as a FAILED execution with an
    InsufficientInputError."""
    result = execution.custom_properties.get("__execution_result__")
    return (
        execution.last_known_state == metadata_store_pb2.Execution.FAILED
        and "InsufficientInputError" in (result.string_value if result else "")
    )


def outcome(execution) -> str:
    """What became of a node in a run: "skipped" (see skipped()), "cached", "failed" or "ran"."""
    if skipped(execution):
        return "skipped"
    if execution.last_known_state == metadata_store_pb2.Execution.CACHED:
        return "cached"
    return "failed" if stopped_the_run(execution) else "ran"


def stopped_the_run(execution) -> bool:
    """Whether the execution failed, its error stopping the run."""
    return execution.last_known_state == metadata_store_pb2.Execution.FAILED and not skipped(
        execution
    )


def producer(store, artifact_id: int) -> int | None:
    """The execution that output the artifact."""
    for event in store.get_events_by_artifact_ids([artifact_id]):
        if event.type == metadata_store_pb2.Event.OUTPUT:
            return event.execution_id
    return None


def inputs(store, execution_id: int | None, key: str) -> list[int]:
    """Ids of the artifacts the execution read under input `key`."""
    if execution_id is None:
        return []
    return [
        event.artifact_id
        for event in store.get_events_by_execution_ids([execution_id])
        if event.type == metadata_store_pb2.Event.INPUT
        and event.path.steps
        and event.path.steps[0].key == key
    ]


def pushes(store: metadata_store.MetadataStore, pipeline_name: str, pusher_node: str) -> list:
    """The PushedModel artifacts node `pusher_node` of `pipeline_name` output that pushed
    (TFX's Pusher records the ones that did not too), oldest first, under either layout (local
    and Kubeflow runs, or Airflow's)."""
    node = store.get_context_by_type_and_name(NODE_CONTEXT_TYPE, f"{pipeline_name}.{pusher_node}")
    outputs = store.get_artifacts_by_context(node.id) if node else []
    outputs += _legacy_node_outputs(store, pipeline_name, pusher_node)
    if not outputs:
        return []
    pushed_model = store.get_artifact_type("PushedModel").id  # TFX registered it with the node
    return sorted(
        {
            artifact.id: artifact
            for artifact in outputs
            if artifact.type_id == pushed_model
            and artifact.custom_properties[PUSHED_PROPERTY].int_value
        }.values(),
        key=lambda artifact: artifact.id,
    )


def _legacy_node_outputs(store: metadata_store.MetadataStore, pipeline_name: str, node_id: str):
    """What node `node_id` of `pipeline_name` output under TFX's legacy drivers (Airflow's),
    which have no node context: the pipeline's executions whose component_id names the node."""
    pipeline = store.get_context_by_type_and_name("pipeline", pipeline_name)
    if pipeline is None or not _context_type_ids(store, LEGACY_RUN_CONTEXT_TYPE):
        return []
    executions = store.get_executions_by_context(
        pipeline.id,
        list_options=metadata_store.ListOptions(
            filter_query=f"properties.{LEGACY_NODE_ID_PROPERTY}.string_value = '{node_id}'"
        ),
    )
    events = store.get_events_by_execution_ids([e.id for e in executions])
    return store.get_artifacts_by_id(
        [e.artifact_id for e in events if e.type == metadata_store_pb2.Event.OUTPUT]
    )


def latest_pushed_model_id(store, model_ids: set[int]) -> int | None:
    """The Model (one of `model_ids`) in the newest push that happened: Pusher pushes the
    servability gate's copy, so the path is PushedModel <- Pusher <- InfraBlessing <- gate <-
    Model. Newer pushes of other models (the baseline's, when `model_ids` are the model's) are
    passed over."""
    pushes = store.get_artifacts_by_type("PushedModel")
    for push in sorted(pushes, key=lambda a: a.id, reverse=True):
        if not push.custom_properties[PUSHED_PROPERTY].int_value:
            continue
        for blessing in inputs(store, producer(store, push.id), "infra_blessing"):
            for model in inputs(store, producer(store, blessing), "model"):
                if model in model_ids:
                    return model
    return None


def training_window(store, model_id: int) -> set[int]:
    """The Examples artifacts (spans) the model was trained on: Model <- Trainer <- transformed
    examples <- Transform <- examples."""
    return {
        examples
        for transformed in inputs(store, producer(store, model_id), "examples")
        for examples in inputs(store, producer(store, transformed), "examples")
    }
