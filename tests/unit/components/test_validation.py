"""Examples that break schemas/schema.pbtxt stop the run before Transform, readably."""

import pytest
import tensorflow as tf
from ml_metadata.metadata_store import metadata_store
from tfx.components import ExampleValidator, ImportExampleGen, StatisticsGen, Transform
from tfx.components.schema_gen.import_schema_gen.component import ImportSchemaGen
from tfx.orchestration.local.local_dag_runner import LocalDagRunner
from tfx.orchestration.pipeline import Pipeline

from components import rows, validation
from pipeline.config import PipelineConfig
from pipeline.metadata_connection import connection_config
from pipeline.pipeline import PREPROCESSING_FN, create_pipeline


def _write_examples(directory, labels):
    directory.mkdir(parents=True)
    with tf.io.TFRecordWriter(str(directory / "data.tfrecord")) as writer:
        for number, label in enumerate(labels):
            writer.write(rows.make_example(label, f"headline {number}", "text").SerializeToString())


def test_label_outside_the_domain_stops_the_run_before_transform(tmp_path):
    # Injected past the parser: tf.Examples written directly, one with label 7.
    _write_examples(tmp_path / "data", [0, 1, 2, 3, 7] * 4)
    example_gen = ImportExampleGen(input_base=str(tmp_path / "data"))
    schema_gen = ImportSchemaGen(schema_file=str(PipelineConfig().schema_dir) + "/schema.pbtxt")
    statistics_gen = StatisticsGen(examples=example_gen.outputs["examples"])
    example_validator = ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"]
    )
    gate = validation.AnomaliesGate(anomalies=example_validator.outputs["anomalies"])
    transform = Transform(
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        preprocessing_fn=PREPROCESSING_FN,
    )
    transform.add_upstream_node(gate)
    metadata = connection_config(str(tmp_path / "m.sqlite"))
    with pytest.raises(validation.DataContractError) as raised:
        LocalDagRunner().run(
            Pipeline(
                pipeline_name="contract",
                pipeline_root=str(tmp_path / "root"),
                components=[
                    example_gen,
                    schema_gen,
                    statistics_gen,
                    example_validator,
                    gate,
                    transform,
                ],
                metadata_connection_config=metadata,
            )
        )
    message = str(raised.value)
    assert "feature 'label'" in message and "Out-of-range values" in message
    assert "schemas/schema.pbtxt" in message and "before Transform" in message
    store = metadata_store.MetadataStore(metadata)
    transform_context = store.get_context_by_type_and_name("node", "contract.Transform")
    assert transform_context is None or not store.get_executions_by_context(transform_context.id)


def test_the_pipeline_runs_transform_only_after_the_gate():
    components = {c.id: c for c in create_pipeline(PipelineConfig()).components}
    assert components["AnomaliesGate"] in components["Transform"].upstream_nodes
