"""Training on two workers against one, and a lost worker's resumed training against an
uninterrupted one (issue 26 items 3 and 6): the Trainer task's own container command from the
compiled Kubeflow IR, as Vertex AI's worker pools and a TFJob start it, alone, as two TF_CONFIG
workers (MultiWorkerMirroredStrategy), and as two workers of which the second is killed as
epoch 2 starts and both are started again (resuming from BackupAndRestore's state); each on
the Transform output of an `agnews run` on the embedded 3k sample, 3 epochs of batches of 32.
Each model's accuracy on that run's holdout split (rows no Trainer saw), with its standard
error.

Both workers run on this machine (on loopback: network namespaces would add nothing to the
speed), so they share its 2 cores: two workers cannot be faster here, and the figure is about
correctness and the cost of the collective ops, not a cluster's speed-up. Examples/s counts the
global batch: the train split's examples over the steady epoch's seconds (median after the
first, which traces the graphs; validation included).

    .venv/bin/python bench/multiworker.py
"""

from __future__ import annotations

import json
import math
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

from e2e import AGNEWS, PROJECT
from publish import publish

from components.artifacts import EPOCH_SECONDS_KEY
from components.features import DESCRIPTION_KEY, HOLDOUT_SPLIT, LABEL_KEY, TITLE_KEY
from tests.helpers.data import newest_output, read_examples, transform_outputs
from tests.helpers.kubeflow import trainer_task

EPOCHS = 3
# How long the surviving worker may take to notice its peer is gone (see test_multiworker).
REPLICA_LOSS_S = 240


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _train_examples(root: Path) -> int:
    import tensorflow as tf

    examples, _ = transform_outputs(root)
    files = tf.io.gfile.glob(f"{examples.uri}/Split-train/*")
    return sum(1 for _ in tf.data.TFRecordDataset(files, compression_type="GZIP"))


def _start(command: list[str], work: Path, addresses: list[str], index: int, name: str):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env["PYTHONUNBUFFERED"] = "1"  # each line as printed: _lose_worker_1 waits for one
    env["TMPDIR"] = str(work / f"{name}-tmp{index}")
    os.makedirs(env["TMPDIR"])
    if len(addresses) > 1:
        env["TF_CONFIG"] = json.dumps(
            {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}}
        )
    log = work / f"{name}{index}.log"
    with open(log, "w") as out:
        return subprocess.Popen(
            command, cwd=PROJECT, env=env, stdout=out, stderr=subprocess.STDOUT
        ), log


def _lose_worker_1(command: list[str], work: Path, addresses: list[str]) -> None:
    """Both workers, worker 1 killed as epoch 2 starts; returns once worker 0 has failed."""
    (first, _), (second, log) = (_start(command, work, addresses, i, "lost") for i in (0, 1))
    deadline = time.monotonic() + 3600
    while f"Epoch 2/{EPOCHS}" not in log.read_text():
        if second.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"worker 1 ended before epoch 2: see {log}")
        time.sleep(0.2)
    second.kill()
    second.wait()
    if first.wait(timeout=REPLICA_LOSS_S) == 0:
        raise SystemExit("worker 0 finished without its peer")


def train(root: Path, work: Path, workers: int, lose_one: bool = False) -> dict:
    """The Trainer task on `workers` processes (`lose_one`: after losing worker 1 once); its
    epochs' seconds and the exported model's directory."""
    work.mkdir()
    command, uris, _ = trainer_task(root, work, EPOCHS)
    addresses = [f"127.0.0.1:{_free_port()}" for _ in range(workers)]
    if lose_one:
        _lose_worker_1(command, work, addresses)
    started = time.perf_counter()
    processes = [_start(command, work, addresses, index, "worker") for index in range(workers)]
    for process, log in processes:
        if process.wait(timeout=3600) != 0:
            raise SystemExit(f"a worker failed: see {log}")
    wall = time.perf_counter() - started
    history = json.loads(Path(uris["model_run"], "history.json").read_text())
    epochs = history[EPOCH_SECONDS_KEY]
    return {
        "workers": workers,
        "lost_one": lose_one,
        "wall_s": wall,
        "epoch_s": epochs,
        "steady_epoch_s": statistics.median(epochs[1:]) if len(epochs) > 1 else epochs[0],
        "model": f"{uris['model']}/Format-Serving",
    }


def holdout_accuracy(root: Path, model: str) -> tuple[float, float]:
    """(accuracy, its standard error) of `model` on the holdout split of the run under `root`."""
    from agnews import predict

    examples = newest_output(root, "FileBasedExampleGen", "examples")
    rows = read_examples(types.SimpleNamespace(uri=examples), HOLDOUT_SPLIT)

    def feature(example, key):
        return example.features.feature[key]

    titles = [feature(e, TITLE_KEY).bytes_list.value[0].decode() for e in rows]
    descriptions = [feature(e, DESCRIPTION_KEY).bytes_list.value[0].decode() for e in rows]
    labels = [feature(e, LABEL_KEY).int64_list.value[0] for e in rows]
    predicted = [row["class_id"] for row in predict.predict(model, titles, descriptions)]
    accuracy = sum(p == t for p, t in zip(predicted, labels, strict=True)) / len(labels)
    return accuracy, math.sqrt(accuracy * (1 - accuracy) / len(labels))


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="agnews-multiworker-") as temp:
        root = Path(temp)
        print("agnews run on the 3k sample (its Transform output) ...", flush=True)
        done = subprocess.run(
            [AGNEWS, "run", "--pipeline-root", str(root / "pipeline"),
             "--metadata-path", str(root / "metadata.sqlite"),
             "--serving-dir", str(root / "serving"), "--no-baseline", "--epochs", "1"],
            capture_output=True, text=True,
        )  # fmt: skip
        if done.returncode != 0:
            raise SystemExit(f"agnews run failed:\n{done.stdout}\n{done.stderr}")
        examples = _train_examples(root)
        results = []
        for workers, lose_one in ((1, False), (2, False), (2, True)):
            print(f"the Trainer task on {workers} worker(s), lost one: {lose_one} ...", flush=True)
            result = train(root, root / f"workers{workers}{'-lost' * lose_one}", workers, lose_one)
            result["holdout_accuracy"], result["holdout_se"] = holdout_accuracy(
                root, result.pop("model")
            )
            results.append(result)
    lines = [
        "| workers | wall s | epochs run (s) | steady epoch s | examples/s | holdout accuracy |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        r["examples_per_s"] = examples / r["steady_epoch_s"]
        name = f"{r['workers']}" + (", worker 1 lost in epoch 2, both resumed" * r["lost_one"])
        lines.append(
            f"| {name} | {r['wall_s']:.0f} | "
            + ", ".join(f"{s:.1f}" for s in r["epoch_s"])
            + f" | {r['steady_epoch_s']:.1f} | {r['examples_per_s']:.0f} | "
            f"{r['holdout_accuracy']:.3f} ± {r['holdout_se']:.3f} |"
        )
    uninterrupted, resumed = results[1], results[2]
    gap = abs(resumed["holdout_accuracy"] - uninterrupted["holdout_accuracy"])
    verdict = (
        f"Resumed against uninterrupted (two workers each): holdout accuracy "
        f"{resumed['holdout_accuracy']:.3f} against {uninterrupted['holdout_accuracy']:.3f}, a "
        f"gap of {gap:.3f}: {'within' if gap <= uninterrupted['holdout_se'] else 'beyond'} one "
        f"standard error ({uninterrupted['holdout_se']:.3f}). The resumed row's wall time and "
        "epochs are the restart's only (it resumes after epoch 1)."
    )
    lines += ["", verdict]
    conditions = (
        f"{platform.node()}, {os.cpu_count()} cores, {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d')}; {examples} train examples, {EPOCHS} epochs of batches of "
        "32, both workers on this machine's loopback (they share its 2 cores)"
    )
    publish(
        "multiworker",
        f"# The Trainer task on two workers against one\n\n{conditions}\n\n" + "\n".join(lines),
        {"conditions": conditions, "train_examples": examples, "results": results},
    )


if __name__ == "__main__":
    main()
