"""Airflow 2 DAG: the same pipeline under TFX's AirflowDagRunner.

Put this file (or a symlink to it) in Airflow's dags folder, in an environment with
`uv sync --extra airflow`. Settings come from the JSON file named by AGNEWS_CONFIG (the
fields `agnews run --print-config` shows); MLMD is the sqlite file at its metadata_path.
"""
import datetime
import os

import components  # noqa: F401  (Keras 2 before TensorFlow)
from tfx.dsl.components.base import base_driver
from tfx.orchestration.airflow.airflow_dag_runner import AirflowDagRunner, AirflowPipelineConfig

from pipeline.config import load_config
from pipeline.metadata import sqlite_connection_config
from pipeline.pipeline import create_pipeline



def _named_per_component(prepare):
    """TFX 1.16's AirflowDagRunner (through its legacy drivers) names each output artifact
    '<output key>:<run id>', and MLMD keeps (type, name) unique: a second component of a kind
    in one run (baseline_transform beside Transform, holdout_evaluator beside Evaluator) then
    failed with AlreadyExistsError. The component id in front keeps the names apart."""
    def prepare_output_artifacts(self, input_artifacts, output_dict, exec_properties,
                                 execution_id, pipeline_info, component_info):
        outputs = prepare(self, input_artifacts, output_dict, exec_properties, execution_id,
                          pipeline_info, component_info)
        for artifact in (a for artifacts in outputs.values() for a in artifacts):
            if artifact.name:
                artifact.name = f"{component_info.component_id}.{artifact.name}"
        return outputs
    return prepare_output_artifacts


base_driver.BaseDriver._prepare_output_artifacts = _named_per_component(
    base_driver.BaseDriver._prepare_output_artifacts)

_config = load_config(os.environ.get("AGNEWS_CONFIG"))
os.makedirs(os.path.dirname(os.path.abspath(_config.metadata_path)), exist_ok=True)

# The Airflow DAG object, found by Airflow's DagBag under the pipeline name.
DAG = AirflowDagRunner(AirflowPipelineConfig(airflow_dag_config={
    "schedule_interval": None,
    "start_date": datetime.datetime(2024, 1, 1),
    "catchup": False,
})).run(create_pipeline(
    _config, sqlite_connection_config(_config.metadata_path)))
