"""Airflow 2 DAG: the same pipeline under TFX's AirflowDagRunner.

Put this file (or a symlink to it) in Airflow's dags folder, in an environment with
`uv sync --extra airflow`. Settings come from the JSON file at the absolute path AGNEWS_CONFIG
(the fields `agnews run --print-config` shows; relative paths in it are taken from its
directory); MLMD is the sqlite file at its metadata_path, or the server its metadata_uri names
(the password from the workers' $AGNEWS_METADATA_PASSWORD or $AGNEWS_METADATA_PASSWORD_FILE).

Airflow parses this file every 30 s or so, and again in each task: building the DAG reads the
config file and nothing else. The data are read, and directories created, when a task runs.
"""

# isort: off
import components  # noqa: F401  (Keras 2 before TensorFlow: Airflow loads this file by path)

# isort: on
import datetime
import os

from tfx.dsl.components.base import base_driver
from tfx.orchestration.airflow.airflow_dag_runner import AirflowDagRunner, AirflowPipelineConfig

from pipeline import beam_packaging, run_lock
from pipeline.config import DEPLOYED_CONFIG_VARIABLE, PipelineConfig, load_deployed_config
from pipeline.metadata_connection import connection_config
from pipeline.pipeline import create_pipeline


def _named_per_component(prepare):
    """TFX 1.16's AirflowDagRunner (through its legacy drivers) names each output artifact
    '<output key>:<run id>', and MLMD keeps (type, name) unique: a second component of a kind
    in one run (baseline_transform beside Transform, holdout_evaluator beside Evaluator) then
    failed with AlreadyExistsError. The component id in front keeps the names apart."""

    def prepare_output_artifacts(
        self,
        input_artifacts,
        output_dict,
        exec_properties,
        execution_id,
        pipeline_info,
        component_info,
    ):
        outputs = prepare(
            self,
            input_artifacts,
            output_dict,
            exec_properties,
            execution_id,
            pipeline_info,
            component_info,
        )
        for artifact in (a for artifacts in outputs.values() for a in artifacts):
            if artifact.name:
                artifact.name = f"{component_info.component_id}.{artifact.name}"
        return outputs

    return prepare_output_artifacts


base_driver.BaseDriver._prepare_output_artifacts = _named_per_component(
    base_driver.BaseDriver._prepare_output_artifacts
)


def _deployed_config() -> PipelineConfig:
    """The config at AGNEWS_CONFIG. It must say test_split: without it, building the pipeline
    would list the data directory at every parse."""
    config = load_deployed_config()
    path = os.environ[DEPLOYED_CONFIG_VARIABLE]
    if config.test_split is None or config.spans is None:
        raise ValueError(
            f'{path} must say "test_split" and "spans": true or false (whether the '
            "data has test files, and span-<N> directories): the DAG is built "
            "without listing the data."
        )
    if config.spans and config.window > 1:
        raise ValueError(
            f'{path} must say "window": 1 under Airflow: with several spans, TFX '
            "1.16's legacy Transform driver (AirflowDagRunner's) registers an extra "
            "output artifact without splits, which the Trainer then refuses. Each "
            "run trains on its span, warm-started from the last pushed model."
        )
    if beam_packaging.needs_shipping(config.beam_args):
        raise ValueError(
            f"{path} names a remote Beam runner, whose workers need agnews: add "
            "--sdk_container_image=IMAGE (the pipeline image) or "
            "--extra_package=WHEEL (`uv build --wheel`) to its beam_args; the DAG "
            "builds nothing at parse time."
        )
    return config


_config = _deployed_config()

# The Airflow DAG object, found by Airflow's DagBag under the pipeline name, run on the
# config's `schedule` (e.g. "@daily"; each run ingests the newest span). One run, and one
# task, at a time: they share one MLMD store, and each task holds `agnews run`'s lock.
DAG = AirflowDagRunner(
    AirflowPipelineConfig(
        airflow_dag_config={
            "schedule_interval": _config.schedule,
            "start_date": datetime.datetime(2024, 1, 1),
            "catchup": False,
            "max_active_runs": 1,
            "max_active_tasks": 1,
        }
    )
).run(create_pipeline(_config, connection_config(_config.metadata_address)))
for _task in DAG.tasks:
    _task.python_callable = run_lock.held_while(
        _task.python_callable,
        _config.metadata_address,
        _config.pipeline_root,
        _config.pipeline_name,
    )
