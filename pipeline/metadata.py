"""ML Metadata on sqlite, read with ml_metadata alone (no TFX import), for the run summary,
the report and the tests."""
from __future__ import annotations

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2


def sqlite_connection_config(path: str) -> metadata_store_pb2.ConnectionConfig:
    """The same connection config as TFX's `sqlite_metadata_connection_config`."""
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    return config


def open_store(path: str) -> metadata_store.MetadataStore:
    return metadata_store.MetadataStore(sqlite_connection_config(path))


def latest_output(store: metadata_store.MetadataStore, pipeline_name: str, node_id: str,
                  type_name: str):
    """The newest artifact of `type_name` around pipeline node `node_id` in MLMD, or None."""
    context = store.get_context_by_type_and_name("node", f"{pipeline_name}.{node_id}")
    if context is None:
        return None
    type_id = store.get_artifact_type(type_name).id
    artifacts = [a for a in store.get_artifacts_by_context(context.id) if a.type_id == type_id]
    return max(artifacts, key=lambda a: a.id) if artifacts else None
