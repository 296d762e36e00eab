"""Two Trainer workers on 127.0.0.1 train together when TF_CONFIG names both."""
import json
import os
import socket
import subprocess
import sys

WORKER = r"""
import json, sys
import components
import numpy as np
import tensorflow as tf
from components import model, trainer
strategy = trainer.distribution_strategy()
with strategy.scope():
    classifier = model.build_model("simple_rnn")
ids = np.random.default_rng(0).integers(1, 100, size=(64, 12)).astype("int64")
labels = np.arange(64, dtype="int64") % 4
options = tf.data.Options()
options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
data = tf.data.Dataset.from_tensor_slices((ids, labels)).batch(8).repeat().with_options(options)
history = classifier.fit(data, steps_per_epoch=3, epochs=1, verbose=0)
multi_worker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
print(json.dumps({"multi_worker": multi_worker, "replicas": strategy.num_replicas_in_sync,
                  "loss": history.history["loss"][0]}))
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_local_workers_train_a_few_steps_together():
    workers = [f"127.0.0.1:{_free_port()}" for _ in range(2)]
    processes = []
    for index in range(2):
        env = {**os.environ, "TF_CONFIG": json.dumps(
            {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})}
        processes.append(subprocess.Popen([sys.executable, "-c", WORKER], env=env, text=True,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    results = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr[-3000:]
        results.append(json.loads(stdout.strip().splitlines()[-1]))
    assert [r["multi_worker"] for r in results] == [True, True]
    assert [r["replicas"] for r in results] == [2, 2]
    assert results[0]["loss"] == results[1]["loss"]  # one model, all-reduced across the workers
