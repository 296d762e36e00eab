"""One pipeline, three orchestrators: the KFP v2 IR and the Airflow DAG have the local graph."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import json_format

from agnews.exit_codes import ExitCode
from pipeline import metadata, run_lock
from pipeline.config import PROJECT_DIR, SAMPLE_DATA_DIR, SCHEMA_DIR, PipelineConfig, load_config
from pipeline.kubeflow_runner import IMAGE_PROJECT_DIR, compile_pipeline
from pipeline.pipeline import create_pipeline
from tests.helpers.data import sample_lines
from tests.helpers.serving import replay_requests, unseen_rows


def local_graph(config: PipelineConfig, span_lineage: bool = True) -> dict[str, set[str]]:
    """Component id -> ids of the components it runs after, as LocalDagRunner sees them."""
    return {
        c.id: {u.id for u in c.upstream_nodes}
        for c in create_pipeline(config, span_lineage=span_lineage).components
    }


def test_kubeflow_ir_is_a_pipeline_spec_with_the_local_graph(tmp_path):
    from kfp.pipeline_spec import pipeline_spec_pb2

    cluster = PipelineConfig(
        data="gs://bucket/ag_news",
        pipeline_root="gs://bucket/root",
        serving_dir="gs://bucket/serving/agnews",
        test_split=True,
        spans=False,
        beam_args=["--runner=DataflowRunner", "--region=europe-west4"],
    )
    path = compile_pipeline(
        cluster, str(tmp_path / "pipeline.json"), image="registry.example/agnews:1"
    )
    text = Path(path).read_text()
    job = json_format.Parse(text, pipeline_spec_pb2.PipelineJob(), ignore_unknown_fields=True)
    spec = json_format.ParseDict(
        json_format.MessageToDict(job.pipeline_spec),
        pipeline_spec_pb2.PipelineSpec(),
        ignore_unknown_fields=True,
    )
    assert spec.pipeline_info.name == "agnews"
    # KFP runs the latest-blessed-model Resolver as two tasks, "<id>-model-blessing-resolver"
    # and "<id>-model-resolver": fold them back into the one node they are.
    tasks: dict[str, set[str]] = {}
    for name, task in spec.root.dag.tasks.items():
        tasks.setdefault(name.split("-")[0], set()).update(
            d.split("-")[0] for d in task.dependent_tasks
        )

    # The same graph as a local run over data with a test split, but for what only ML Metadata
    # resolves (window, drift gate, last pushed model: see kubeflow_runner).
    local_data = tmp_path / "data"
    local_data.mkdir()
    for split in ("train", "test"):
        (local_data / f"{split}.csv").write_bytes(b"\n".join(sample_lines(20)) + b"\n")
    expected = local_graph(PipelineConfig(data=str(local_data)), span_lineage=False)
    assert tasks == expected
    executors = json.loads(text)["pipelineSpec"]["deploymentSpec"]["executors"]
    assert {e["container"]["image"] for e in executors.values() if "container" in e} == {
        "registry.example/agnews:1"
    }
    assert f"{IMAGE_PROJECT_DIR}/schemas/schema.pbtxt" in text
    assert "gs://bucket/ag_news" in text and "--runner=DataflowRunner" in text


def test_print_config_shows_the_effective_values(tmp_path, capsys, monkeypatch):
    """Paths come out absolute: a relative one in the config file is taken from the file's
    directory, one from a flag or a default from the working directory; URLs are kept."""
    from agnews import cli

    (tmp_path / "conf").mkdir()
    (tmp_path / "cwd").mkdir()
    (tmp_path / "conf" / "c.json").write_text(
        json.dumps(
            {
                "epochs": 7,
                "model": "lstm",
                "pipeline_root": "runs/root",
                "data": "tfds:ag_news_subset:../tfds",
                "serving_dir": "serving",
            }
        )
    )
    monkeypatch.chdir(tmp_path / "cwd")
    assert (
        cli.main(
            [
                "run",
                "--config",
                "../conf/c.json",
                "--epochs",
                "5",
                "--metadata-path",
                "m/metadata.sqlite",
                "--serving-dir",
                "gs://bucket/serving",
                "--print-config",
            ]
        )
        == ExitCode.OK
    )
    shown = json.loads(capsys.readouterr().out)
    assert (shown["epochs"], shown["model"]) == (5, "lstm")
    assert shown["pipeline_root"] == str(tmp_path / "conf" / "runs" / "root")
    assert shown["data"] == f"tfds:ag_news_subset:{tmp_path / 'tfds'}"
    assert shown["metadata_path"] == str(tmp_path / "cwd" / "m" / "metadata.sqlite")
    assert shown["serving_dir"] == "gs://bucket/serving"
    assert shown["schema_dir"] == str(SCHEMA_DIR)

    assert cli.main(["run", "--print-config"]) == ExitCode.OK
    shown = json.loads(capsys.readouterr().out)
    assert shown["data"] == str(SAMPLE_DATA_DIR)
    assert shown["pipeline_root"] == str(tmp_path / "cwd" / "artifacts" / "pipeline")


@pytest.mark.airflow
def test_airflow_dag_runs_to_a_pushed_model(tmp_path):
    """As the README deploys it: every airflow command runs in another directory than the
    config, whose paths are relative to the config file."""
    project = tmp_path / "project"
    project.mkdir()
    elsewhere = tmp_path / "elsewhere"  # the working directory of every airflow command
    elsewhere.mkdir()
    config_file = project / "agnews.json"
    settings = {
        "data": "data",
        "pipeline_root": "out/root",
        "metadata_path": "out/metadata.sqlite",
        "serving_dir": "out/serving",
        "epochs": 1,
        "batch_size": 32,
        "min_accuracy": 0.0,
        "max_accuracy_drop": 1.0,
        "baseline": False,
        "spans": True,
        "schedule": "@daily",
        "window": 1,
        "monitor_logs": "logs",
    }
    config_file.write_text(json.dumps(settings))
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "agnews_dag.py").symlink_to(PROJECT_DIR / "pipeline" / "airflow_dag.py")
    (dags / "agnews_monitor_dag.py").symlink_to(PROJECT_DIR / "pipeline" / "airflow_monitor_dag.py")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AGNEWS_CONFIG": str(config_file),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # Importing TensorFlow + TFX alone can take longer than Airflow's default 30 s.
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "600",
        "TF_USE_LEGACY_KERAS": "1",
    }
    airflow = str(Path(sys.executable).parent / "airflow")

    def run(*args, timeout=1500, ok=True):
        done = subprocess.run(
            [airflow, *args],
            env=env,
            cwd=elsewhere,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert (done.returncode == 0) == ok, (
            f"airflow {' '.join(args)}:\n{done.stdout[-4000:]}\n{done.stderr[-2000:]}"
        )
        return done.stdout + done.stderr

    def python(*args) -> str:
        """stdout of this environment's Python with ARGS, as Airflow's workers run it."""
        return subprocess.run(
            [sys.executable, *args],
            env=env,
            cwd=elsewhere,
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
        ).stdout

    def import_errors(ok=False):
        """The DAG file's import errors, read from Airflow's JSON output: its table output
        wraps messages at the terminal's width, which differs from host to host."""
        output = run("dags", "list-import-errors", "--output", "json", timeout=600, ok=ok)
        # The JSON document is one line among Airflow's and TensorFlow's log lines.
        (document,) = [
            line for line in output.splitlines() if line == "[]" or line.startswith("[{")
        ]
        return "\n".join(error["error"] for error in json.loads(document))

    run("db", "migrate", timeout=600)
    # Without test_split the DAG would have to list the data at every parse: it refuses.
    assert 'must say "test_split"' in import_errors()
    # Nor does it build a package for remote Beam workers at every parse: it asks for one.
    config_file.write_text(
        json.dumps(
            {
                **settings,
                "test_split": False,
                "beam_args": ["--runner=DataflowRunner", "--project=p"],
            }
        )
    )
    assert "names a remote Beam runner" in import_errors()
    config_file.write_text(json.dumps({**settings, "test_split": False, "window": 3}))
    assert 'must say "window": 1 under Airflow' in import_errors()
    config_file.write_text(json.dumps({**settings, "test_split": False}))

    # Parsing the DAG file, as the scheduler does every 30 s, reads no data (there is none yet)
    # and creates nothing, here or in the working directory.
    assert import_errors(ok=True) == ""
    assert sorted(p.name for p in project.iterdir()) == ["agnews.json"]
    assert list(elsewhere.iterdir()) == []
    shown = json.loads(
        python(
            "-c",
            "import json, pipeline.airflow_dag as m; print(json.dumps({"
            "'graph': {t.task_id: sorted(t.upstream_task_ids) for t in m.DAG.tasks}, "
            "'max_active_runs': m.DAG.max_active_runs, "
            "'max_active_tasks': m.DAG.max_active_tasks, "
            "'schedule': m.DAG.schedule_interval}))",
        )
        .strip()
        .splitlines()[-1]
    )
    config = load_config(str(config_file))
    assert {k: set(v) for k, v in shown["graph"].items()} == local_graph(config)
    assert (shown["max_active_runs"], shown["max_active_tasks"], shown["schedule"]) == (
        1,
        1,
        "@daily",
    )
    assert sorted(p.name for p in project.iterdir()) == ["agnews.json"]

    # Each task holds `agnews run`'s lock: while another run holds it, the task is refused.
    with run_lock.exclusive(config.metadata_path, config.pipeline_root, config.pipeline_name):
        output = run(
            "tasks", "test", "agnews", "FileBasedExampleGen", "2024-01-01", timeout=600, ok=False
        )
    assert f"another agnews run (pid {os.getpid()}) is using {config.metadata_path}" in output

    # Two daily runs, each ingesting the newest span; the second is warm-started from the first
    # run's pushed model (one span per window under Airflow: see airflow_dag.py).
    lines = sample_lines(600)
    for day, span in ((2, 1), (3, 2)):
        (project / "data" / f"span-{span}").mkdir(parents=True)
        (project / "data" / f"span-{span}" / "train.csv").write_bytes(
            b"\n".join(lines[(span - 1) * 300 : span * 300]) + b"\n"
        )
        run("dags", "test", "agnews", f"2024-01-0{day}")
        versions = sorted(p for p in (project / "out" / "serving").iterdir() if p.name.isdigit())
        assert len(versions) == span and (versions[-1] / "saved_model.pb").is_file()
    store = metadata.open_store(str(project / "out" / "metadata.sqlite"))
    # TFX's legacy drivers (Airflow's) record the component id as an execution property.
    first, second = sorted(
        (
            e
            for e in store.get_executions()
            if e.properties["component_id"].string_value == "Trainer"
        ),
        key=lambda e: e.id,
    )
    first_model = [
        e.artifact_id
        for e in store.get_events_by_execution_ids([first.id])
        if e.type == e.OUTPUT and e.path.steps[0].key == "model"
    ]
    assert metadata.inputs(store, second.id, "base_model") == first_model
    assert list(elsewhere.iterdir()) == []

    # The registry reads Airflow's pushes too (TFX's legacy layout: no node contexts): the first
    # `agnews models` command registers both, the newest stable, as the server served it.
    listed = python(
        *("-m", "agnews.cli", "models", "--metadata-path", config.metadata_path),
        *("--serving-dir", config.serving_dir, "list", "--json"),
    ).splitlines()
    # Every stdout line is JSON (the registration notes went to stderr).
    aliases = {entry["version"]: entry["aliases"] for entry in map(json.loads, listed)}
    assert aliases == {int(versions[0].name): [], int(versions[1].name): ["stable"]}, listed

    # The monitoring DAG beside it, on the server's request logs of the served version: a window
    # of the same news passes, against the training statistics of the Airflow run that pushed
    # it; a Sports-only window alerts, which fails the task (never retried).
    logs, served = project / "logs", int(versions[-1].name)
    rows = unseen_rows(600)
    replay_requests(logs, served, rows[:250])
    run("dags", "test", "agnews_monitor", "2024-01-04")
    (report,) = (logs / "monitor").glob("monitor-*.json")
    window = json.loads(report.read_text())
    assert window["window"]["rows"] == 250
    assert window["reference"].startswith(f"version {served}'s training statistics")
    assert not any(check["alert"] for check in window["checks"]), window["checks"]
    replay_requests(logs, served, [row for row in rows[250:] if row[2] == "Sports"][:250])
    output = run("dags", "test", "agnews_monitor", "2024-01-05", ok=False)
    assert "ALERT: class_mix infinity_norm vs_training" in output
    assert len(list((logs / "monitor").glob("monitor-*.json"))) == 2
    assert list(elsewhere.iterdir()) == []


def test_building_and_compiling_the_pipeline_leaves_ai_platform_out(tmp_path):
    script = (
        "import json, sys\n"
        "from pipeline.config import PipelineConfig\n"
        "from pipeline.kubeflow_runner import compile_pipeline\n"
        "from pipeline.local_runner import run\n"
        "from pipeline.pipeline import create_pipeline\n"
        "create_pipeline(PipelineConfig())\n"
        f"compile_pipeline(PipelineConfig(test_split=False), {str(tmp_path / 'p.json')!r})\n"
        "print(json.dumps(sorted(m for m in sys.modules "
        "if m.startswith(('google.cloud.aiplatform', 'tfx.v1')))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.splitlines()[-1]) == []
    assert (tmp_path / "p.json").stat().st_size > 1000


def test_compile_puts_the_trainers_on_gpu_nodes(tmp_path, capsys):
    from agnews import cli

    output = tmp_path / "p.json"
    assert (
        cli.main(
            [
                "compile",
                "kubeflow",
                "--output",
                str(output),
                "--data",
                "gs://b/ag_news",
                "--pipeline-root",
                "gs://b/root",
                "--trainer-accelerator",
                "NVIDIA_TESLA_T4:2",
            ]
        )
        == ExitCode.OK
    )
    executors = json.loads(output.read_text())["pipelineSpec"]["deploymentSpec"]["executors"]
    resources = {
        name.removesuffix("_executor"): executor["container"].get("resources")
        for name, executor in executors.items()
        if "container" in executor
    }
    assert {name for name, spec in resources.items() if spec} == {"Trainer", "baseline_trainer"}
    assert resources["Trainer"] == {"accelerator": {"type": "NVIDIA_TESLA_T4", "count": "2"}}
    capsys.readouterr()
    assert (
        cli.main(["compile", "kubeflow", "--output", str(output), "--trainer-accelerator", "T4:x"])
        == ExitCode.STOPPED
    )
    assert "--trainer-accelerator takes TYPE[:COUNT]" in capsys.readouterr().err
