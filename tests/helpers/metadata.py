"""ML Metadata laid out as TFX lays it out, for tests that read a store without running a
pipeline: a Pusher's pushes (and, with the model directories, what Pusher writes)."""

from pathlib import Path

from ml_metadata.proto import metadata_store_pb2

from components.artifacts import (
    PUSHED_DESTINATION_PROPERTY,
    PUSHED_PROPERTY,
    PUSHED_VERSION_PROPERTY,
)
from pipeline import metadata


def record_push(
    metadata_path: Path, serving_dir: Path, version: int, pipeline_name: str = "agnews"
) -> None:
    """One Pusher execution of `pipeline_name` that pushed `version` to `serving_dir`: a
    PushedModel output (pushed, pushed_version, pushed_destination) associated with the node's
    context; and, unless it exists (a real model copied there), the version directory with an
    empty saved_model.pb in it."""
    store = metadata.open_store(str(metadata_path))
    node_type = store.put_context_type(metadata_store_pb2.ContextType(name="node"))
    pushed_type = store.put_artifact_type(metadata_store_pb2.ArtifactType(name="PushedModel"))
    execution_type = store.put_execution_type(metadata_store_pb2.ExecutionType(name="Pusher"))
    destination = serving_dir / str(version)
    if not destination.exists():
        destination.mkdir(parents=True)
        (destination / "saved_model.pb").write_bytes(b"")
    artifact = metadata_store_pb2.Artifact(type_id=pushed_type, uri=str(destination))
    artifact.custom_properties[PUSHED_PROPERTY].int_value = 1
    artifact.custom_properties[PUSHED_VERSION_PROPERTY].string_value = str(version)
    artifact.custom_properties[PUSHED_DESTINATION_PROPERTY].string_value = str(destination)
    node = store.get_context_by_type_and_name("node", f"{pipeline_name}.Pusher")
    store.put_execution(
        metadata_store_pb2.Execution(
            type_id=execution_type, last_known_state=metadata_store_pb2.Execution.COMPLETE
        ),
        [(artifact, metadata_store_pb2.Event(type=metadata_store_pb2.Event.OUTPUT))],
        [node or metadata_store_pb2.Context(type_id=node_type, name=f"{pipeline_name}.Pusher")],
        reuse_context_if_already_exist=True,
    )
