"""Distributed training through the real Trainer: TFX's GenericExecutor calls the project's
run_fn on the end-to-end run's Transform output, in processes of their own, as Vertex AI or a
Kubeflow TFJob runs each training replica (same command, same output artifacts). The two-worker
test runs the Trainer task's own container command from the compiled Kubeflow IR on two hosts
(network namespaces: make test-cluster)."""

import contextlib
import glob
import json
import os
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from agnews.exit_codes import ExitCode
from components.artifacts import TRAINING_BACKUP_DIR_NAME
from tests.helpers.cli import agnews_subprocess
from tests.helpers.data import transform_outputs
from tests.helpers.hosts import Hosts, hosts
from tests.helpers.kubeflow import trainer_task

# argv: the artifacts' URIs (JSON), whether to start TensorFlow on a CPU split into two logical
# devices before the Trainer runs (TF's stand-in for two GPUs; under LocalDagRunner TensorFlow has
# run long before the Trainer), and the epochs. Keras 2 comes from the environment, as in the
# image.
RUN_TRAINER = r"""
import json, sys
uris, split_cpu, epochs = json.loads(sys.argv[1]), sys.argv[2] == "1", int(sys.argv[3])
if split_cpu:
    import tensorflow as tf
    cpu, = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    assert float(tf.reduce_sum(tf.ones([2]))) == 2.0  # TensorFlow runs from here on
from tfx.components.trainer.executor import GenericExecutor
from tfx.proto import trainer_pb2
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

def artifact(kind, uri, **properties):
    made = kind()
    made.uri = uri
    for name, value in properties.items():
        setattr(made, name, value)
    return [made]

GenericExecutor().Do(
    {"examples": artifact(
        standard_artifacts.Examples, uris["examples"], split_names='["train", "eval"]'
     ),
     "transform_graph": artifact(standard_artifacts.TransformGraph, uris["transform_graph"])},
    {"model": artifact(standard_artifacts.Model, uris["model"]),
     "model_run": artifact(standard_artifacts.ModelRun, uris["model_run"])},
    {"run_fn": "components.trainer.run_fn",
     "train_args": proto_utils.proto_to_json(trainer_pb2.TrainArgs(splits=["train"])),
     "eval_args": proto_utils.proto_to_json(trainer_pb2.EvalArgs(splits=["eval"])),
     "custom_config": json.dumps({"epochs": epochs, "batch_size": 32, "patience": epochs})})
"""


# How soon a worker whose peer died must fail: MultiWorkerMirroredStrategy checks its peers every
# 30 s and gives each check 10 s (TF 2.16), plus start-up.
REPLICA_LOSS_S = 240
# Any phase of two workers training (both started, first_run's small data) ends within this.
TRAINING_S = 900


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start_trainer(
    uris: dict,
    tmp_dir,
    split_cpu: bool = False,
    tf_config: dict | None = None,
    epochs: int = 1,
    on: tuple[Hosts, str] | None = None,
    container: list[str] | None = None,
):
    """The Trainer in a process of its own (RUN_TRAINER, or a `container` command line run by
    the environment's `python` as the image's PATH has it); `on` (hosts, name): on that host."""
    tmp_dir.mkdir(exist_ok=True)
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TMPDIR": str(tmp_dir)}
    env["PYTHONUNBUFFERED"] = "1"  # each line as it is printed: a test may wait for one
    env.pop("TF_CONFIG", None)
    if tf_config:
        env["TF_CONFIG"] = json.dumps(tf_config)
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    command = container or [
        sys.executable,
        "-c",
        RUN_TRAINER,
        json.dumps(uris),
        str(int(split_cpu)),
        str(epochs),
    ]
    return subprocess.Popen(
        on[0].command(on[1], command) if on else command,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _finish(process) -> str:
    output, _ = process.communicate(timeout=900)
    assert process.returncode == 0, output[-4000:]
    return output


def _uris(first_run, tmp_path) -> dict:
    root, _ = first_run
    examples, graph = transform_outputs(root)
    return {
        "examples": examples.uri,
        "transform_graph": graph,
        "model": str(tmp_path / "model"),
        "model_run": str(tmp_path / "model_run"),
    }


def _predicted_labels(model_dir: str) -> list[str]:
    code, _, out, err = agnews_subprocess(
        "predict",
        "--model",
        model_dir,
        "Stocks slide as oil prices climb",
        "Yankees clinch the pennant",
    )
    assert code == ExitCode.OK, err[-2000:]
    return [line.split()[0] for line in out.splitlines()[1:]]


@contextlib.contextmanager
def _stopped_by(seconds: float):
    """Yields a list for the test's processes: each is killed after `seconds`, or when the block
    ends (a failed assertion), so that no stalled worker hangs the test or outlives it."""
    processes: list[subprocess.Popen] = []

    def kill_all() -> None:
        for process in processes:
            if process.poll() is None:
                process.kill()

    watchdog = threading.Timer(seconds, kill_all)
    watchdog.start()
    try:
        yield processes
    finally:
        watchdog.cancel()
        kill_all()


# The training hosts, and the port each worker serves TensorFlow's collectives on.
TRAINERS, TRAINER_PORT = ["trainer-0", "trainer-1"], 2222


@pytest.mark.cluster
def test_two_hosts_run_the_kubeflow_trainer_task_lose_one_and_resume(first_run, tmp_path):
    """The Trainer task's container command from the compiled Kubeflow IR on two hosts, with
    TF_CONFIG naming them (as Vertex AI's worker pools and a TFJob run it), two epochs; worker 1
    is killed as the second epoch starts: worker 0 fails with a clear error within
    REPLICA_LOSS_S (MultiWorkerMirroredStrategy's health check), not a hang. The same command
    again on both (the same artifacts, as a retried task) resumes from the first epoch's backup,
    trains the second epoch on one model (the same all-reduced losses in both) that the chief
    exports where the task's output artifact, the one Pusher is given, points, and deletes the
    backup."""
    container, uris, reported = trainer_task(first_run[0], tmp_path, epochs=2)
    workers = [f"{name}:{TRAINER_PORT}" for name in TRAINERS]
    configs = [
        {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        for index in range(len(workers))
    ]
    with hosts(TRAINERS) as made:
        _train_lose_a_replica_and_resume(uris, configs, made, container, tmp_path)
    exported = json.loads(reported.read_text())["artifacts"]["model"]["artifacts"][0]["uri"]
    assert exported == uris["model"]


def _train_lose_a_replica_and_resume(uris, configs, made: Hosts, container, tmp_path) -> None:
    def start_both(scratch: str) -> list[subprocess.Popen]:
        """The Trainer task on both hosts, each with its scratch directory `scratch`N."""
        return [
            _start_trainer(
                uris,
                tmp_path / f"{scratch}{i}",
                tf_config=configs[i],
                on=(made, TRAINERS[i]),
                container=container,
            )
            for i in (0, 1)
        ]

    with _stopped_by(TRAINING_S) as processes:
        processes += start_both("tmp")
        seen = []
        for line in processes[1].stdout:
            seen.append(line)
            if line.startswith("Epoch 2/2"):
                processes[1].kill()
                break
        assert seen and seen[-1].startswith("Epoch 2/2"), "".join(seen)[-3000:]
        output, _ = processes[0].communicate(timeout=REPLICA_LOSS_S)
    assert processes[0].returncode != 0
    assert "ReplicaLostError: a training replica stopped answering" in output, output[-3000:]
    backup = Path(uris["model_run"], TRAINING_BACKUP_DIR_NAME)
    assert backup.is_dir()

    with _stopped_by(TRAINING_S) as restarted:
        restarted += start_both("restart")
        outputs = [_finish(process) for process in restarted]
    for output in outputs:
        assert "Training on 2 replica(s): MultiWorkerMirroredStrategy" in output
        assert "Resuming at epoch 2 from the backup" in output
        assert re.findall(r"^Epoch (\d)/2$", output, flags=re.MULTILINE) == ["2"]
    losses = [re.findall(r" - (?:val_)?loss: ([0-9.]+)", output) for output in outputs]
    assert len(losses[0]) == 2 and losses[0] == losses[1]
    assert not backup.exists()  # deleted once training ended
    # The chief (worker 0) exported the model and its history; worker 1's scratch copy is gone.
    assert glob.glob(f"{uris['model']}/Format-Serving/saved_model.pb")
    assert json.loads(Path(uris["model_run"], "history.json").read_text())["loss"]
    assert os.listdir(tmp_path / "restart1") == []
    labels = _predicted_labels(f"{uris['model']}/Format-Serving")
    assert len(labels) == 2 and set(labels) <= {"World", "Sports", "Business", "Sci/Tech"}


def test_mirrored_replicas_train_in_a_process_where_tensorflow_already_runs(first_run, tmp_path):
    uris = _uris(first_run, tmp_path)
    output = _finish(_start_trainer(uris, tmp_path / "tmp", split_cpu=True))
    assert "Training on 2 replica(s): MirroredStrategy" in output
    assert len(_predicted_labels(f"{uris['model']}/Format-Serving")) == 2


def test_joining_a_cluster_after_tensorflow_started_is_a_clear_error(tmp_path):
    script = (
        "import tensorflow as tf; tf.constant(1) + 1\n"
        "from components import trainer\n"
        "try:\n    trainer.distribution_strategy()\n"
        "except trainer.ClusterSetupError as error:\n    print('refused:', error)\n"
    )
    env = {
        **os.environ,
        "TF_USE_LEGACY_KERAS": "1",
        "TF_CONFIG": json.dumps(
            {
                "cluster": {"worker": [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]},
                "task": {"type": "worker", "index": 0},
            }
        ),
    }
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (
        "refused: TF_CONFIG names 2 training processes, but TensorFlow already ran" in done.stdout
    )
