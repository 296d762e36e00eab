"""Makes agnews importable on remote Beam workers (Dataflow, Flink, ...).

Beam pickles the ingest DoFns by reference to `components.ingest`: a worker that runs them
needs this package installed. Local runners (DirectRunner, the default) run in this
interpreter and need nothing. A worker image the user names (--sdk_container_image, or the
older --worker_harness_container_image) is trusted to carry agnews, as the pipeline image
built from the Dockerfile does; so is a package the user ships (--extra_package, --setup_file)
and a worker pool the user runs (--environment_type=EXTERNAL: `agnews beam-worker` in an
environment where the agnews wheel is installed).
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import tempfile

from pipeline.config import PROJECT_DIR

# portable_args' default job service: Beam's own, started in the submitting process.
EMBEDDED_JOB_SERVICE = "embed"


class WheelBuildError(RuntimeError):
    """The agnews wheel for remote Beam workers could not be built."""


def find_uv() -> str:
    """uv as the Makefile finds it: on PATH, else the copy `make` installs in .tools/."""
    return shutil.which("uv") or str(PROJECT_DIR / ".tools" / "bin" / "uv")


def portable_args(worker_pool: str, job_service: str = EMBEDDED_JOB_SERVICE) -> list[str]:
    """The Beam options of a run through Beam's portable Job API (the path Flink, Spark and
    Dataflow share): the job service at `job_service` (HOST:PORT; `embed` starts one in this
    process) runs the job on the SDK workers of the pool at `worker_pool` (HOST:PORT, an
    `agnews beam-worker`)."""
    return [
        "--runner=PortableRunner",
        f"--job_endpoint={job_service}",
        "--environment_type=EXTERNAL",
        f"--environment_config={worker_pool}",
    ]


def unreachable_portable_services(beam_args: list[str], timeout_s: float = 5) -> list[str]:
    """The services of a portable run (`beam_args`' job service unless embedded, and its
    EXTERNAL worker pool) that refuse a connection now, each as "the Beam ROLE at ADDRESS":
    what a Beam job failure reports as "Error running pipeline" when one of them went away. An
    address this cannot read (not HOST:PORT, [IPV6]:PORT or Beam's {"url": ...}) is not
    probed: only a refusal counts."""
    import socket

    from apache_beam.options.pipeline_options import PipelineOptions, PortableOptions

    options = PipelineOptions(beam_args).view_as(PortableOptions)
    services = {}
    if options.job_endpoint and options.job_endpoint != EMBEDDED_JOB_SERVICE:
        services["job service"] = options.job_endpoint
    if options.environment_type == "EXTERNAL" and options.environment_config:
        services["worker pool"] = options.environment_config
    down = []
    for role, address in services.items():
        endpoint = _host_and_port(address)
        if endpoint is None:
            continue
        try:
            socket.create_connection(endpoint, timeout=timeout_s).close()
        except OSError:
            down.append(f"the Beam {role} at {address}")
    return down


def _host_and_port(address: str) -> tuple[str, int] | None:
    """(host, port) of a Beam service address as Beam reads it: HOST:PORT, [IPV6]:PORT, or for
    an EXTERNAL environment JSON with a "url"; None when it is none of these."""
    if address.lstrip().startswith("{"):
        try:
            address = json.loads(address)["url"]
        except (ValueError, KeyError, TypeError):
            return None
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        return None
    return host.removeprefix("[").removesuffix("]"), int(port)


def needs_shipping(beam_args: list[str]) -> bool:
    """A remote runner, and neither a worker image, a package of the user's nor a worker pool of
    theirs named: its workers lack agnews unless it is shipped."""
    from apache_beam.options.pipeline_options import (
        PipelineOptions,
        PortableOptions,
        SetupOptions,
        StandardOptions,
        WorkerOptions,
    )

    options = PipelineOptions(beam_args)
    runner = options.view_as(StandardOptions).runner
    # Beam resolves runner names case-insensitively, with or without "Runner" (e.g. "direct");
    # a portable runner's LOOPBACK workers are this very process. EXTERNAL workers come from a
    # pool the user started, in an environment that must have agnews (docs/orchestrators.md):
    # `agnews beam-worker`'s Python pool installs nothing staged anyway.
    environment = options.view_as(PortableOptions).environment_type
    workers_have_agnews = (
        runner is None
        or runner.lower().removesuffix("runner").endswith("direct")
        or environment in ("LOOPBACK", "EXTERNAL")
    )
    worker, setup = options.view_as(WorkerOptions), options.view_as(SetupOptions)
    return not workers_have_agnews and not (
        worker.sdk_container_image
        or worker.worker_harness_container_image
        or setup.extra_packages
        or setup.setup_file
    )


def with_image(beam_args: list[str], image: str) -> list[str]:
    """`beam_args` plus `--sdk_container_image=image` (an image with agnews installed) when
    needed."""
    return (
        [*beam_args, f"--sdk_container_image={image}"] if needs_shipping(beam_args) else beam_args
    )


def with_wheel(beam_args: list[str], wheel_dir: str) -> list[str]:
    """`beam_args` plus `--extra_package=` an agnews wheel built into `wheel_dir`, when needed.

    Beam's workers pip-install the wheel and its dependencies (tfx, tensorflow, ... as pinned
    in pyproject.toml). TFX then skips its own TFX-only package, since a dependency flag is set.
    """
    if not needs_shipping(beam_args):
        return beam_args
    return [*beam_args, f"--extra_package={build_wheel(wheel_dir)}"]


def build_wheel(wheel_dir: str) -> str:
    """Builds this checkout's wheel (hatchling, through `uv build`) into `wheel_dir`; returns its
    path.

    Built aside and renamed into place: a run that is staging the previous wheel keeps reading a
    whole file.
    """
    if not (PROJECT_DIR / "pyproject.toml").is_file():
        raise FileNotFoundError(
            f"No agnews source at {PROJECT_DIR} to build a wheel for the Beam workers from: name a "
            "worker image that has agnews installed with --beam-arg=--sdk_container_image=IMAGE."
        )
    uv = find_uv()
    if not os.path.isfile(uv):
        raise FileNotFoundError(
            "uv, which builds the agnews wheel for the Beam workers, is neither on PATH nor at "
            f"{uv}: install it (`make setup` does) or name a worker image with "
            "--beam-arg=--sdk_container_image=IMAGE."
        )
    os.makedirs(wheel_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=wheel_dir) as scratch:
        done = subprocess.run(
            [uv, "build", "--wheel", "--quiet", "--out-dir", scratch, str(PROJECT_DIR)],
            capture_output=True,
            text=True,
        )
        built = glob.glob(os.path.join(scratch, "*.whl"))
        if done.returncode or len(built) != 1:
            detail = (done.stderr.strip().splitlines() or ["no wheel written"])[-1]
            raise WheelBuildError(
                f"Building the agnews wheel for the Beam workers failed: {detail}"
            )
        wheel = os.path.join(wheel_dir, os.path.basename(built[0]))
        os.replace(built[0], wheel)
    return wheel
