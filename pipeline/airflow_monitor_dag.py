"""Airflow 2 DAG: `agnews monitor` on a schedule, beside the pipeline's DAG (airflow_dag.py).

Deployed as that one is: this file (or a symlink to it) in Airflow's dags folder, AGNEWS_CONFIG
the absolute path of the same config file. Its `monitor_logs` is the server's --log-requests
directory (without it there is no monitoring DAG); `monitor_schedule` says how often;
`monitor_webhook` and `monitor_export_span` are the command's --webhook and --export-span; the
ML Metadata store and the served versions are the pipeline's. The DAG is named
<pipeline_name>_monitor.

The task runs the `agnews monitor` command in a process of its own, with the Python that runs
Airflow: parsing this file imports neither TensorFlow nor TFX, and the task's outcome is the
command's exit code. An alert (exit 4) fails the task, so Airflow's own failure alerting
(email_on_failure, on_failure_callback, the UI) reports it beside the report's ALERT lines. The
task is never retried: the alerting run has recorded its window as read, so a retry would find
nothing new and pass, hiding the alert. A run killed midway records nothing, and the next
scheduled run reads the same window again.
"""

import datetime
import shlex
import sys

from airflow import DAG
from airflow.operators.bash import BashOperator

from pipeline.config import PipelineConfig, load_deployed_config

MONITOR_TASK_ID = "monitor"


def monitor_command(config: PipelineConfig) -> list[str]:
    """The `agnews monitor` command line for the config's logs, store and served versions."""
    command = [sys.executable, "-m", "agnews.cli", "monitor", "--logs", str(config.monitor_logs)]
    command += ["--metadata-path", config.metadata_path, "--model", config.serving_dir]
    if config.metadata_uri:  # the password: from the worker's environment, never the command
        command += ["--metadata-uri", config.metadata_uri]
    if config.monitor_webhook:
        command += ["--webhook", config.monitor_webhook]
    if config.monitor_export_span:
        command += ["--export-span", config.monitor_export_span]
    return command


_config = load_deployed_config()
if _config.monitor_logs:
    with DAG(
        dag_id=f"{_config.pipeline_name}_monitor",
        schedule=_config.monitor_schedule,
        start_date=datetime.datetime(2024, 1, 1),
        catchup=False,
        max_active_runs=1,  # windows are read in order: one run at a time
        doc_md=__doc__,
    ) as MONITOR_DAG:
        BashOperator(
            task_id=MONITOR_TASK_ID,
            bash_command=shlex.join(monitor_command(_config)),
            retries=0,
        )
