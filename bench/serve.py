"""Serving throughput and latency of `agnews serve` under load from native clients, against
today's server and the model's own speed, all in one run:

- `wrk` (REST: TF Serving's predict body, one example per request) and `ghz` (gRPC
  `tensorflow.serving.PredictionService/Predict`, one example per request), each in its own
  process, at 1, 8 and 32 connections, batching on and off, against `agnews serve` started as
  users start it; server CPU milliseconds per request from /proc, the load tool's from rusage;
- the reference: the werkzeug server of e531c75 (taken from git into a temporary directory, run
  with this venv), same tool, 8 connections, batching off and on;
- the transports alone: the same REST and gRPC stacks answering a fixed prediction without a
  model, 8 connections: what a request costs before any model work;
- the ceiling: the served version's serving_default called in this process at batch 32, before
  and after the servers' rows;
- the first request after a load, with and without the warmup replay (a fresh process each).

bench/load_tools.sh installs wrk and ghz first. Needs a pushed model: run `make run` first.

    .venv/bin/python bench/serve.py [--model artifacts/serving/agnews] [--duration 15]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import components  # noqa: F401  (Keras 2 before TensorFlow)
from components import features, quiet, settings

tf = quiet.import_tensorflow()
from google.protobuf import descriptor_pb2, json_format  # noqa: E402
from publish import publish  # noqa: E402
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2  # noqa: E402

from agnews.serving.server import use_tensorflow_threads  # noqa: E402
from agnews.versions import resolve_version_dir  # noqa: E402
from pipeline.config import PipelineConfig  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
LOAD_TOOLS = BENCH / "load_tools.sh"
GHZ = BENCH / ".tools" / "bin" / "ghz"
WRK_SCRIPT = BENCH / "serve_predict.lua"
REFERENCE_COMMIT = "e531c75"  # the last commit with the werkzeug server (pipeline/serve.py)
MODEL_NAME = settings.SERVING_MODEL_NAME
PREDICT_METHOD = "tensorflow.serving.PredictionService.Predict"
CONNECTIONS = (1, 8, 32)
TARGET_CONNECTIONS = 8  # where issue 20 sets its targets, and where the reference is measured
CEILING_BATCH = 32
WARMUP_SECONDS = 2

HEADLINES = [
    "Stocks slide as oil prices climb",
    "Yankees clinch the pennant in extra innings",
    "New chip doubles battery life of laptops",
    "Leaders meet to discuss ceasefire",
]
DESCRIPTIONS = [
    "The announcement came on Monday, surprising analysts and observers alike.",
    "Officials said more details would follow later in the week.",
    "Reuters - The move follows months of talks.",
    "Shares and hopes rose as the news spread quickly through the markets on Friday.",
]
EXAMPLES = list(itertools.product(HEADLINES, DESCRIPTIONS))  # the requests' texts, in turn


# --- the model in process ---------------------------------------------------------------------


def batch_call(version_dir: str):
    """serving_default of the version on a batch of CEILING_BATCH examples, as a call."""
    signature = tf.saved_model.load(version_dir).signatures[features.SERVING_DEFAULT]
    rows = [EXAMPLES[i % len(EXAMPLES)] for i in range(CEILING_BATCH)]
    inputs = {
        features.TITLE_KEY: tf.constant([t for t, _ in rows]),
        features.DESCRIPTION_KEY: tf.constant([d for _, d in rows]),
    }
    return lambda: signature(**inputs)


def ceiling(call, calls: int = 300) -> dict:
    """Examples/s of the model called directly at batch CEILING_BATCH: what any server could
    reach at most on this machine."""
    for _ in range(10):
        call()
    started = time.perf_counter()
    for _ in range(calls):
        call()
    seconds = time.perf_counter() - started
    return {
        "batch": CEILING_BATCH,
        "calls": calls,
        "examples_per_s": CEILING_BATCH * calls / seconds,
        "ms_per_call": seconds / calls * 1000,
    }


FIRST_REQUEST = r"""
import json, sys, time
import components
import tensorflow as tf
from agnews.versions import load_warm
version_dir, warm = sys.argv[1], sys.argv[2] == "warm"
model = load_warm(version_dir) if warm else tf.saved_model.load(version_dir)
started = time.perf_counter()
model.signatures["serving_default"](
    title=tf.constant(["Oil prices rise"]), description=tf.constant([""])
)
print(json.dumps(time.perf_counter() - started))
"""


def first_request_ms(version_dir: str, warm: bool) -> float:
    done = subprocess.run(
        [sys.executable, "-c", FIRST_REQUEST, version_dir, "warm" if warm else "cold"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return json.loads(done.stdout.strip().splitlines()[-1]) * 1000


# --- request files for the load tools ---------------------------------------------------------


def write_rest_bodies(path: Path) -> None:
    """One TF Serving REST predict body per line, one example each (read by serve_predict.lua)."""
    path.write_text(
        "".join(
            json.dumps({"instances": [{features.TITLE_KEY: title, features.DESCRIPTION_KEY: text}]})
            + "\n"
            for title, text in EXAMPLES
        )
    )


def write_grpc_requests(path: Path) -> None:
    """The same examples as PredictRequests in protobuf JSON, a list ghz sends in turn."""
    requests = []
    for title, text in EXAMPLES:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = MODEL_NAME
        request.model_spec.signature_name = features.SERVING_DEFAULT
        request.inputs[features.TITLE_KEY].CopyFrom(tf.make_tensor_proto([title]))
        request.inputs[features.DESCRIPTION_KEY].CopyFrom(tf.make_tensor_proto([text]))
        requests.append(json_format.MessageToDict(request))
    path.write_text(json.dumps(requests))


def write_protoset(path: Path) -> None:
    """PredictionService and the files it imports as a FileDescriptorSet, ghz's --protoset,
    from the descriptors tensorflow-serving-api compiled in (no .proto files or reflection
    needed)."""
    descriptors = descriptor_pb2.FileDescriptorSet()
    seen: set[str] = set()

    def add(file_descriptor) -> None:
        if file_descriptor.name in seen:
            return
        seen.add(file_descriptor.name)
        for dependency in file_descriptor.dependencies:
            add(dependency)
        file_descriptor.CopyToProto(descriptors.file.add())

    add(prediction_service_pb2.DESCRIPTOR)
    path.write_bytes(descriptors.SerializeToString())


# --- servers ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU of `pid` and its descendants, reaped children included (/proc/PID/stat)."""
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:  # fields after "(comm)": state, ppid, ... utime stime cutime cstime at 11-14
                stats[int(entry.name)] = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
    tree, grew = {pid}, True
    while grew:
        children = {p for p, fields in stats.items() if int(fields[1]) in tree} - tree
        tree |= children
        grew = bool(children)
    ticks = sum(int(stats[p][i]) for p in tree if p in stats for i in (11, 12, 13, 14))
    return ticks / os.sysconf("SC_CLK_TCK")


REFERENCE_LAUNCHER = r"""
import sys, threading
import components
from components import quiet
quiet.import_tensorflow()
import reference_serve as serve
model, port_off, port_on = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
batcher = serve.Batcher(serve.DEFAULT_BATCH_MAX_ROWS, serve.DEFAULT_BATCH_TIMEOUT_MS / 1000)
without = serve.make_serving_server(model, "127.0.0.1", port_off)
threading.Thread(target=without.serve_forever, daemon=True).start()
serve.make_serving_server(model, "127.0.0.1", port_on, batcher=batcher).serve_forever()
"""


# The transports alone: a uvicorn ASGI app and a grpc.aio PredictionService on one uvloop, as
# agnews serve runs them, answering every request with one fixed prediction and no model.
TRANSPORT_LAUNCHER = r"""
import json, sys
import grpc, uvicorn, uvloop
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
rest_port, grpc_port = int(sys.argv[1]), int(sys.argv[2])
STATUS = json.dumps({"model_version_status": [{"state": "AVAILABLE"}]}).encode()
PREDICTIONS = json.dumps(
    {"predictions": [{"probabilities": [0.25] * 4, "class_id": 0, "label": "World"}]}
).encode()
RESPONSE = predict_pb2.PredictResponse()
for key, value in (("probabilities", [[0.25] * 4]), ("class_id", [0]), ("label", [b"World"])):
    RESPONSE.outputs[key].CopyFrom(tf.make_tensor_proto(value))

async def app(scope, receive, send):
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body",
                "body": STATUS if scope["method"] == "GET" else PREDICTIONS})

class Fixed(prediction_service_pb2_grpc.PredictionServiceServicer):
    async def Predict(self, request, context):
        return RESPONSE

async def main():
    server = grpc.aio.server()
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Fixed(), server)
    server.add_insecure_port(f"127.0.0.1:{grpc_port}")
    await server.start()
    await uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=rest_port, http="httptools",
                                        lifespan="off", access_log=False,
                                        log_level="warning")).serve()

uvloop.run(main())
"""
SERVER_ORDER = ("reference", "fixed answer", "agnews serve")  # the table's order


def rest_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/v1/models/{MODEL_NAME}"


class Server:
    """A server process on 127.0.0.1, its output in a log file."""

    def __init__(self, command: list[str], log: Path, env: dict | None = None):
        self.log = log
        with log.open("w") as out:
            self.process = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env={**os.environ, **(env or {})},
            )

    def _fail(self, why: str):
        lines = self.log.read_text().strip().splitlines() or ["(no output)"]
        raise SystemExit(f"serve bench: {why}; its last line: {lines[-1]}")

    def wait_ready(self, port: int, body: bytes, timeout_s: float = 180) -> None:
        """Until GET reports the model AVAILABLE on `port`, then one predict (which loads a
        lazy server's model)."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                self._fail(f"the server exited with {self.process.returncode}")
            try:
                with urllib.request.urlopen(rest_url(port), timeout=5) as response:
                    if b"AVAILABLE" in response.read():
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self._fail(
                    f"the server did not report the model AVAILABLE within {timeout_s:.0f} s"
                )
            time.sleep(0.5)
        request = urllib.request.Request(
            rest_url(port) + ":predict", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            if b"predictions" not in response.read():
                self._fail("the first predict request got no predictions")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@contextlib.contextmanager
def running(
    command: list[str], log: Path, rest_ports: list[int], body: bytes, env: dict | None = None
):
    server = Server(command, log, env)
    try:
        for port in rest_ports:
            server.wait_ready(port, body)
        yield server
    finally:
        server.stop()


# --- load -------------------------------------------------------------------------------------


def wrk(port: int, connections: int, seconds: int, bodies: Path) -> dict:
    """`wrk -t1 -cN` posting one example per request; figures from serve_predict.lua's summary."""
    done = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(WRK_SCRIPT),
            rest_url(port) + ":predict",
            "--",
            str(bodies),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    summary = json.loads(
        next(line for line in done.stdout.splitlines() if line.startswith("BENCH_JSON "))[
            len("BENCH_JSON ") :
        ]
    )
    errors = sum(
        summary[key]
        for key in ("connect_errors", "read_errors", "write_errors", "timeouts", "status_4xx_5xx")
    )
    return {
        "requests": summary["requests"],
        "seconds": summary["duration_us"] / 1e6,
        "p50_ms": summary["p50_us"] / 1000,
        "p99_ms": summary["p99_us"] / 1000,
        "errors": errors,
        "tool": summary,
    }


def ghz(port: int, connections: int, seconds: int, protoset: Path, requests: Path) -> dict:
    """ghz with N connections, one request in flight on each (as wrk -cN), one example per
    request, on one CPU as wrk -t1; in-flight requests finish at the end instead of failing."""
    done = subprocess.run(
        [
            str(GHZ),
            "--insecure",
            "--protoset",
            str(protoset),
            "--call",
            PREDICT_METHOD,
            "--data-file",
            str(requests),
            f"--concurrency={connections}",
            f"--connections={connections}",
            f"--duration={seconds}s",
            "--duration-stop=wait",
            "--cpus=1",
            "--timeout=10s",
            "--format=json",
            f"127.0.0.1:{port}",
        ],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0 or not done.stdout.strip():
        raise SystemExit(
            f"serve bench: ghz failed: {(done.stderr.strip().splitlines() or ['no output'])[-1]}"
        )
    report = json.loads(done.stdout)
    latency = {
        row["percentage"]: row["latency"] / 1e6 for row in report.get("latencyDistribution") or []
    }
    ok = (report.get("statusCodeDistribution") or {}).get("OK", 0)
    return {
        "requests": report["count"],
        "seconds": report["total"] / 1e9,
        "p50_ms": latency.get(50, float("nan")),
        "p99_ms": latency.get(99, float("nan")),
        "errors": report["count"] - ok,
        "tool": {
            key: report.get(key) for key in ("statusCodeDistribution", "errorDistribution", "rps")
        },
    }


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measured(server: Server, load) -> dict:
    """`load()`'s figures with the server's CPU and the load tool's over it (the tool is the only
    child this process waits for meanwhile, so the growth of RUSAGE_CHILDREN is its CPU)."""
    server_before, client_before = cpu_seconds(server.process.pid), _children_cpu_seconds()
    row = load()
    requests = max(row["requests"], 1)
    row["requests_per_s"] = row["requests"] / row["seconds"]
    row["server_cpu_ms_per_request"] = (
        (cpu_seconds(server.process.pid) - server_before) * 1000 / requests
    )
    row["client_cpu_ms_per_request"] = (_children_cpu_seconds() - client_before) * 1000 / requests
    return row


def load_tools() -> str:
    done = subprocess.run(["bash", str(LOAD_TOOLS)], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(
            f"serve bench: {LOAD_TOOLS.name} failed: "
            f"{(done.stderr.strip().splitlines() or ['no output'])[-1]}"
        )
    return done.stdout.strip()


# --- the run ----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        default=PipelineConfig().serving_dir,
        help="Base directory of numeric versions (default: %(default)s).",
    )
    parser.add_argument(
        "--duration", type=int, default=15, help="Seconds of load per row (default: 15)."
    )
    args = parser.parse_args()
    started = time.monotonic()
    tools = load_tools()
    try:
        version_dir = resolve_version_dir(args.model)
    except FileNotFoundError as error:
        raise SystemExit(f"serve bench: {error}") from None
    base_dir = str(Path(version_dir).parent)
    conditions = {
        "cores": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "seconds_per_row": args.duration,
        "model": base_dir,
        "version": Path(version_dir).name,
        "tools": tools,
        "commit": subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip(),
    }
    print(f"serve bench: {conditions}", flush=True)
    # The ceiling runs with the server's TensorFlow thread pools (agnews serve's defaults).
    use_tensorflow_threads(settings.DEFAULT_INTRA_OP_THREADS, settings.DEFAULT_INTER_OP_THREADS)
    call = batch_call(version_dir)
    limits = [ceiling(call)]
    print(
        f"serve bench: ceiling {limits[0]['examples_per_s']:,.0f} examples/s "
        f"at batch {CEILING_BATCH}",
        flush=True,
    )

    rows = []

    def record(server_name: str, api: str, connections: int, batching: bool, row: dict) -> None:
        row.update(server=server_name, api=api, connections=connections, batching=batching)
        rows.append(row)
        print(
            f"serve bench: {server_name} {api} c={connections} "
            f"batching={'on' if batching else 'off'}: "
            f"{row['requests_per_s']:,.0f} req/s, p50 {row['p50_ms']:.1f} ms, "
            f"p99 {row['p99_ms']:.1f} ms, "
            f"{row['errors']} errors, CPU ms/req: server {row['server_cpu_ms_per_request']:.2f}, "
            f"client {row['client_cpu_ms_per_request']:.2f}",
            flush=True,
        )

    with tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp:
        tmp = Path(tmp)
        bodies, requests, protoset = (
            tmp / "bodies.jsonl",
            tmp / "requests.json",
            tmp / "predict.protoset",
        )
        write_rest_bodies(bodies)
        first_body = bodies.read_text().splitlines()[0].encode()
        write_grpc_requests(requests)
        write_protoset(protoset)
        reference = subprocess.run(
            ["git", "show", f"{REFERENCE_COMMIT}:pipeline/serve.py"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        (tmp / "reference_serve.py").write_text(reference)

        # Today's server, both flavours in one process (one start instead of two; the idle one
        # costs nothing).
        port_off, port_on = free_port(), free_port()
        command = [sys.executable, "-c", REFERENCE_LAUNCHER, base_dir, str(port_off), str(port_on)]
        with running(
            command,
            tmp / "reference.log",
            [port_off, port_on],
            first_body,
            {"PYTHONPATH": str(tmp)},
        ) as server:
            for batching, port in ((False, port_off), (True, port_on)):
                wrk(port, TARGET_CONNECTIONS, WARMUP_SECONDS, bodies)
                record(
                    "reference",
                    "REST",
                    TARGET_CONNECTIONS,
                    batching,
                    measured(
                        server,
                        lambda port=port: wrk(port, TARGET_CONNECTIONS, args.duration, bodies),
                    ),
                )

        rest_port, grpc_port = free_port(), free_port()
        command = [sys.executable, "-c", TRANSPORT_LAUNCHER, str(rest_port), str(grpc_port)]
        with running(command, tmp / "transport.log", [rest_port], first_body) as server:
            wrk(rest_port, TARGET_CONNECTIONS, WARMUP_SECONDS, bodies)
            record(
                "fixed answer",
                "REST",
                TARGET_CONNECTIONS,
                False,
                measured(server, lambda: wrk(rest_port, TARGET_CONNECTIONS, args.duration, bodies)),
            )
            ghz(grpc_port, TARGET_CONNECTIONS, WARMUP_SECONDS, protoset, requests)
            record(
                "fixed answer",
                "gRPC",
                TARGET_CONNECTIONS,
                False,
                measured(
                    server,
                    lambda: ghz(grpc_port, TARGET_CONNECTIONS, args.duration, protoset, requests),
                ),
            )

        for batching in (True, False):
            rest_port, grpc_port = free_port(), free_port()
            command = [
                str(Path(sys.executable).with_name("agnews")),
                "serve",
                "--model",
                base_dir,
                "--rest-port",
                str(rest_port),
                "--grpc-port",
                str(grpc_port),
                *([] if batching else ["--no-batching"]),
            ]
            with running(command, tmp / "agnews-serve.log", [rest_port], first_body) as server:
                wrk(rest_port, TARGET_CONNECTIONS, WARMUP_SECONDS, bodies)
                for connections in CONNECTIONS:
                    record(
                        "agnews serve",
                        "REST",
                        connections,
                        batching,
                        measured(
                            server,
                            lambda rest_port=rest_port, connections=connections: wrk(
                                rest_port, connections, args.duration, bodies
                            ),
                        ),
                    )
                ghz(grpc_port, TARGET_CONNECTIONS, WARMUP_SECONDS, protoset, requests)
                for connections in CONNECTIONS:
                    record(
                        "agnews serve",
                        "gRPC",
                        connections,
                        batching,
                        measured(
                            server,
                            lambda grpc_port=grpc_port, connections=connections: ghz(
                                grpc_port, connections, args.duration, protoset, requests
                            ),
                        ),
                    )

    limits.append(ceiling(call))  # again, as the machine's other load may have changed
    limit = max(limits, key=lambda measured_limit: measured_limit["examples_per_s"])
    for row in rows:
        row["share_of_ceiling"] = row["requests_per_s"] / limit["examples_per_s"]
    first = {warm: first_request_ms(version_dir, warm) for warm in (False, True)}
    conditions["load_average_at_end"] = os.getloadavg()
    conditions["bench_seconds"] = time.monotonic() - started
    met = targets(rows)
    publish(
        "serve",
        render(rows, limits, met, first, conditions),
        {
            "conditions": conditions,
            "ceiling": {"before": limits[0], "after": limits[1], "used": limit},
            "rows": rows,
            "targets": met,
            "first_request_ms": {"cold": first[False], "warm": first[True]},
        },
    )


def _find(rows: list[dict], server: str, api: str, batching: bool) -> dict:
    """The row of `server`'s `api` at TARGET_CONNECTIONS."""
    return next(
        r
        for r in rows
        if (r["server"], r["api"], r["connections"], r["batching"])
        == (server, api, TARGET_CONNECTIONS, batching)
    )


def targets(rows: list[dict]) -> list[dict]:
    """Issue 20's targets, each with the figures it compares and whether it is met."""
    reference_off = _find(rows, "reference", "REST", False)
    rest_8 = _find(rows, "agnews serve", "REST", True)
    found = [
        {
            "target": "REST, 8 connections, batching on: ≥ 3x the reference without batching",
            "value": rest_8["requests_per_s"],
            "bound": 3 * reference_off["requests_per_s"],
            "met": rest_8["requests_per_s"] >= 3 * reference_off["requests_per_s"],
        },
        {
            "target": "REST, 8 connections, batching on: p99 < 25 ms",
            "value": rest_8["p99_ms"],
            "bound": 25.0,
            "met": rest_8["p99_ms"] < 25,
        },
    ]
    grpc_8 = _find(rows, "agnews serve", "gRPC", True)
    found.append(
        {
            "target": "gRPC, 8 connections, batching on: ≥ REST's",
            "value": grpc_8["requests_per_s"],
            "bound": rest_8["requests_per_s"],
            "met": grpc_8["requests_per_s"] >= rest_8["requests_per_s"],
        }
    )
    return found


def render(
    rows: list[dict], limits: list[dict], met: list[dict], first: dict, conditions: dict
) -> str:
    load = " / ".join(f"{v:.2f}" for v in conditions["load_average_at_start"])
    lines = [
        f"Conditions: {conditions['cores']} cores shared with other work, "
        f"load average {load} (1/5/15 min) "
        f"at the start, {conditions['load_average_at_end'][0]:.2f} at the end; "
        f"{conditions['seconds_per_row']} s "
        f"of load per row after a {WARMUP_SECONDS} s warm-up per server; "
        "clients on the same machine: "
        "`wrk -t1 -cN` (serve_predict.lua) and "
        "`ghz --cpus=1 --concurrency=N --connections=N`; one example "
        f"per request, {len(EXAMPLES)} texts in turn; model {conditions['model']} version "
        f"{conditions['version']}; tree {conditions['commit']}; {conditions['tools']}; whole bench "
        f"{conditions['bench_seconds'] / 60:.1f} min.",
        "",
        "Ceiling: the served version's serving_default called in process "
        f"at batch {CEILING_BATCH} (TensorFlow "
        f"intra-op threads {settings.DEFAULT_INTRA_OP_THREADS}, "
        f"inter-op {settings.DEFAULT_INTER_OP_THREADS or 'TF default'}, "
        "as agnews serve runs it), before "
        f"and after the servers' rows: {limits[0]['examples_per_s']:,.0f} "
        f"and {limits[1]['examples_per_s']:,.0f} "
        f"examples/s ({limits[0]['ms_per_call']:.2f} "
        f"and {limits[1]['ms_per_call']:.2f} ms per call); the "
        "shares below are of the higher.",
        "",
        "| server | API | connections | batching | req/s | p50 ms | p99 ms | errors "
        "| server CPU ms/req "
        "| client CPU ms/req | share of ceiling |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    order = sorted(
        rows,
        key=lambda r: (
            SERVER_ORDER.index(r["server"]),
            r["api"],
            r["connections"],
            not r["batching"],
        ),
    )
    lines += [
        f"| {r['server']} | {r['api']} | {r['connections']} | {'on' if r['batching'] else 'off'} | "
        f"{r['requests_per_s']:,.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']} | "
        f"{r['server_cpu_ms_per_request']:.2f} | {r['client_cpu_ms_per_request']:.2f} | "
        f"{'—' if r['server'] == 'fixed answer' else format(r['share_of_ceiling'], '.0%')} |"
        for r in order
    ]
    lines += [
        "",
        "Reference: the werkzeug server of "
        f"{REFERENCE_COMMIT} (`git show {REFERENCE_COMMIT}:pipeline/serve.py`), "
        "same model, same tool. "
        "Fixed answer: no model, one fixed prediction from the same transports "
        "(uvicorn + httptools, "
        "grpc.aio, one uvloop): what a request costs the server and the load tool "
        "before any model "
        f"work. Errors: wrk's socket errors and HTTP statuses ≥ 400, ghz's non-OK statuses. "
        f"Batching on: the servers' defaults (at most {settings.DEFAULT_BATCH_MAX_ROWS} rows, "
        f"waiting {settings.DEFAULT_BATCH_TIMEOUT_MS:g} ms for more requests while a batch runs).",
        "",
        "Targets (issue 20):",
        "",
    ]
    lines += [
        f"- {t['target']}: {t['value']:,.1f} against {t['bound']:,.1f}: "
        f"{'met' if t['met'] else 'NOT met'}."
        for t in met
    ]
    at_32 = [r for r in order if r["connections"] == 32 and r["server"] == "agnews serve"]
    lines.append(
        "- 32 connections, share of the ceiling: "
        + "; ".join(
            f"{r['api']} batching {'on' if r['batching'] else 'off'} {r['share_of_ceiling']:.0%}"
            for r in at_32
        )
        + "."
    )
    lines += [
        "",
        "First request after loading the version, in a fresh process: "
        f"{first[False]:,.0f} ms without "
        f"warmup, {first[True]:,.0f} ms with the warmup requests replayed.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
