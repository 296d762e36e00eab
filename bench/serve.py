"""Serving latency and throughput of the pushed model: in process (the SavedModel's
serving_default called directly) and over HTTP (`agnews serve` on 127.0.0.1, TF Serving's
REST format). Needs a pushed model: run `make run` first.

    .venv/bin/python bench/serve.py [--model artifacts/serving/agnews]
"""
from __future__ import annotations

import argparse
import json
import threading
import time
import urllib.request
from pathlib import Path

import components  # noqa: F401  (Keras 2 before TensorFlow)
import numpy as np
import tensorflow as tf

from components import features
from publish import publish
from pipeline import serve
from pipeline.config import PipelineConfig
from pipeline.predict import resolve_version_dir

HEADLINES = ["Stocks slide as oil prices climb", "Yankees clinch the pennant in extra innings",
             "New chip doubles battery life of laptops", "Leaders meet to discuss ceasefire"]
DESCRIPTION = "The announcement came on Monday, surprising analysts and observers alike."


def _batch(size: int) -> dict[str, list[str]]:
    return {features.TITLE_KEY: [HEADLINES[i % len(HEADLINES)] for i in range(size)],
            features.DESCRIPTION_KEY: [DESCRIPTION] * size}


def _timed(call, repeats: int) -> np.ndarray:
    call()  # warm-up: traces and loads
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return np.array(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=PipelineConfig().serving_dir)
    parser.add_argument("--repeats", type=int, default=300)
    args = parser.parse_args()
    version_dir = resolve_version_dir(args.model)
    signature = tf.saved_model.load(version_dir).signatures[features.SERVING_DEFAULT]

    def in_process(size):
        batch = _batch(size)
        return lambda: signature(**{k: tf.constant(v) for k, v in batch.items()})

    base_dir = str(Path(version_dir).parent)
    server = serve.make_serving_server(base_dir, port=0, max_body_bytes=8 << 20, max_batch=4096)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/v1/models/{serve.MODEL_NAME}:predict"

    def over_http(size):
        body = json.dumps({"inputs": _batch(size)}).encode()

        def call():
            with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=60) as response:
                response.read()
        return call

    rows = []
    for where, make in (("in process", in_process), ("HTTP", over_http)):
        latency = _timed(make(1), args.repeats) * 1000
        rows.append({"where": where, "batch": 1, "p50_ms": float(np.percentile(latency, 50)),
                     "p99_ms": float(np.percentile(latency, 99)),
                     "examples_per_s": 1000 / float(latency.mean())})
        for size in (32, 256):
            seconds = _timed(make(size), max(10, args.repeats // size * 4))
            rows.append({"where": where, "batch": size,
                         "p50_ms": float(np.percentile(seconds, 50) * 1000),
                         "p99_ms": float(np.percentile(seconds, 99) * 1000),
                         "examples_per_s": size / float(seconds.mean())})
    server.shutdown()

    table = ["| where | batch | p50 ms | p99 ms | examples/s |", "| --- | --- | --- | --- | --- |"]
    table += [f"| {r['where']} | {r['batch']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
              f"{r['examples_per_s']:,.0f} |" for r in rows]
    text = "\n".join(table) + f"\n\nModel: {version_dir}; one headline + description per example."
    publish("serve", text, rows)


if __name__ == "__main__":
    main()
