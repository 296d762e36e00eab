"""Serving latency and throughput of the pushed model: in process (the SavedModel's
serving_default called directly) and over HTTP (`agnews serve` on 127.0.0.1, TF Serving's
REST format); 1, 8 and 32 concurrent HTTP clients with batching on and off; the first request
after a load with and without the warmup requests replayed (each in a fresh process).
Needs a pushed model: run `make run` first.

    .venv/bin/python bench/serve.py [--model artifacts/serving/agnews]
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
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


FIRST_REQUEST = r"""
import json, sys, time
import components
import tensorflow as tf
from pipeline.predict import load_warm
version_dir, warm = sys.argv[1], sys.argv[2] == "warm"
model = load_warm(version_dir) if warm else tf.saved_model.load(version_dir)
started = time.perf_counter()
model.signatures["serving_default"](title=tf.constant(["Oil prices rise"]), description=tf.constant([""]))
print(json.dumps(time.perf_counter() - started))
"""


def first_request_ms(version_dir: str, warm: bool) -> float:
    done = subprocess.run([sys.executable, "-c", FIRST_REQUEST, version_dir, "warm" if warm else "cold"],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1]) * 1000


def concurrent_clients(url: str, clients: int, total_requests: int) -> dict:
    """`clients` threads, each sending one-example requests back to back."""
    body = json.dumps({"instances": [{"title": HEADLINES[0], "description": DESCRIPTION}]}).encode()
    latencies: list[float] = []
    lock = threading.Lock()

    def client():
        for _ in range(total_requests // clients):
            started = time.perf_counter()
            with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=60) as response:
                response.read()
            with lock:
                latencies.append(time.perf_counter() - started)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return {"clients": clients, "requests": len(ms), "requests_per_s": len(ms) / wall,
            "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=PipelineConfig().serving_dir)
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--concurrent-requests", type=int, default=640)
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

    concurrency = []
    for batching in (False, True):
        # `agnews serve` in its own process, as users run it: the clients' threads here do not
        # compete with the server for its interpreter.
        server = subprocess.Popen([str(Path(sys.executable).with_name("agnews")), "serve", "--model", base_dir,
                                   "--port", "0", *([] if batching else ["--no-batching"])],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        port = next(re.search(r"127\.0\.0\.1:(\d+)", line) for line in server.stdout
                    if "Serving" in line).group(1)
        url = f"http://127.0.0.1:{port}/v1/models/{serve.MODEL_NAME}:predict"
        concurrent_clients(url, 8, 64)  # loads the model
        for clients in (1, 8, 32):
            result = concurrent_clients(url, clients, args.concurrent_requests)
            concurrency.append({"batching": batching, **result})
            print(concurrency[-1], flush=True)
        server.terminate()
        server.wait()
    first = {warm: [first_request_ms(version_dir, warm) for _ in range(3)] for warm in (False, True)}

    table = ["| where | batch | p50 ms | p99 ms | examples/s |", "| --- | --- | --- | --- | --- |"]
    table += [f"| {r['where']} | {r['batch']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
              f"{r['examples_per_s']:,.0f} |" for r in rows]
    table += ["", f"Concurrent HTTP clients, one example per request, {args.concurrent_requests} requests "
              f"per row, `agnews serve` in its own process (batching: max {serve.DEFAULT_BATCH_MAX_ROWS} "
              f"rows, timeout {serve.DEFAULT_BATCH_TIMEOUT_MS} ms):", "",
              "| clients | batching | requests/s | p50 ms | p99 ms |", "| --- | --- | --- | --- | --- |"]
    table += [f"| {r['clients']} | {'on' if r['batching'] else 'off'} | {r['requests_per_s']:,.0f} | "
              f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} |"
              for r in sorted(concurrency, key=lambda r: (r["clients"], r["batching"]))]
    table += ["", "First request after loading the version, fresh process each, 3 runs (ms): "
              f"without warmup {', '.join(f'{v:.0f}' for v in first[False])}; "
              f"with the warmup requests replayed {', '.join(f'{v:.0f}' for v in first[True])}."]
    text = "\n".join(table) + f"\n\nModel: {version_dir}; one headline + description per example."
    publish("serve", text, {"single_client": rows, "concurrent": concurrency,
                            "first_request_ms": {"cold": first[False], "warm": first[True]}})


if __name__ == "__main__":
    main()
