"""Airflow 2 DAG: the same pipeline under TFX's AirflowDagRunner.

Put this file (or a symlink to it) in Airflow's dags folder, in an environment with
`uv sync --extra airflow`. Settings come from the JSON file named by AGNEWS_CONFIG (the
fields `agnews run --print-config` shows); MLMD is the sqlite file at its metadata_path.
"""
import datetime
import os

import components  # noqa: F401  (Keras 2 before TensorFlow)
from tfx.orchestration.airflow.airflow_dag_runner import AirflowDagRunner, AirflowPipelineConfig

from pipeline.config import load_config
from pipeline.metadata import sqlite_connection_config
from pipeline.pipeline import create_pipeline

_config = load_config(os.environ.get("AGNEWS_CONFIG"))
os.makedirs(os.path.dirname(os.path.abspath(_config.metadata_path)), exist_ok=True)

# The Airflow DAG object, found by Airflow's DagBag under the pipeline name.
DAG = AirflowDagRunner(AirflowPipelineConfig(airflow_dag_config={
    "schedule_interval": None,
    "start_date": datetime.datetime(2024, 1, 1),
    "catchup": False,
})).run(create_pipeline(
    _config, sqlite_connection_config(_config.metadata_path)))
