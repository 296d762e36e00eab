"""The pipeline image, without a Docker engine: its build context as .dockerignore filters it,
its Python environment built the way the Dockerfile builds it, and KFP tasks of the compiled
pipeline run in that environment by their own container command lines."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from docker.utils.build import exclude_paths

from components.artifacts import ACCEPTED, read_summary
from pipeline.beam_packaging import find_uv
from pipeline.config import PROJECT_DIR, PipelineConfig
from pipeline.kubeflow_runner import IMAGE_PROJECT_DIR, compile_pipeline
from tests.helpers.kubeflow import container_argv, executor_input

IMAGE = "registry.example/agnews-pipeline:test"


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) of each Dockerfile line, continuation lines joined."""
    text = (PROJECT_DIR / "Dockerfile").read_text().replace("\\\n", " ")
    return [
        tuple(line.strip().split(None, 1))
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def copied_paths() -> list[str]:
    """The context paths the Dockerfile COPYs (each to the same path under its WORKDIR)."""
    return [source for op, args in dockerfile() if op == "COPY" for source in args.split()[:-1]]


def build_context() -> set[str]:
    """The files `docker build .` sends, as Docker (here docker-py, its Python client) reads
    .dockerignore."""
    patterns = [
        line.strip()
        for line in (PROJECT_DIR / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    return {
        path for path in exclude_paths(str(PROJECT_DIR), patterns) if (PROJECT_DIR / path).is_file()
    }


def test_the_build_context_is_what_the_dockerfile_copies():
    context = build_context()
    copied = copied_paths()
    assert {op: args for op, args in dockerfile() if op == "WORKDIR"} == {
        "WORKDIR": IMAGE_PROJECT_DIR
    }
    for source in copied:  # `docker build` fails on a COPY whose source the context lacks
        assert any(path == source or path.startswith(source + "/") for path in context), source
    beyond = {
        path
        for path in context
        if not any(path == source or path.startswith(source + "/") for source in copied)
    }
    assert beyond == {"Dockerfile", ".dockerignore"}  # Docker always sends these two
    assert not any("__pycache__" in path for path in context)
    assert sum((PROJECT_DIR / path).stat().st_size for path in context) < 5_000_000


def _image_env(venv: Path) -> dict[str, str]:
    """The image's environment: its Dockerfile ENV, and `python` being the one with agnews."""
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root")}
    for op, args in dockerfile():
        if op == "ENV":
            env.update(pair.split("=", 1) for pair in args.split())
    return env


def _build_image_python(workdir: Path, venv: Path) -> None:
    """The Dockerfile's own RUN lines, into a fresh virtualenv instead of the TFX image's Python:
    `uv` is this machine's, `--system` is the virtualenv and /tmp is the test's."""
    uv = find_uv()
    # The Python 3.10 these tests run on (the TFX 1.16 image has 3.10 too).
    done = subprocess.run(
        [uv, "venv", "--quiet", "--python", os.path.realpath(sys.executable), str(venv)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    steps = [args for op, args in dockerfile() if op == "RUN"]
    assert steps[0] == "python -m pip install --no-cache-dir uv"  # the image's uv: here, ours
    assert any("uv export --frozen" in step for step in steps[1:])
    for step in steps[1:]:
        command = (
            step.replace("/tmp/", f"{workdir.parent}/")
            .replace("uv ", f"{uv} ")
            .replace("--system", f"--python {venv / 'bin' / 'python'}")
        )
        done = subprocess.run(
            ["bash", "-c", command], cwd=workdir, capture_output=True, text=True, timeout=1200
        )
        assert done.returncode == 0, f"{step}:\n{done.stderr[-3000:]}"


def _run_container(container: dict, filled_in: dict, workdir: Path, env: dict) -> None:
    """One container command line of the IR, run where the image runs it."""
    argv = container_argv(container, filled_in)
    done = subprocess.run(argv, cwd=workdir, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{' '.join(argv[:3])}:\n{done.stderr[-4000:]}"


@pytest.mark.image
def test_the_image_environment_runs_the_compiled_tasks(tmp_path):
    workdir, venv, outputs = tmp_path / "pipeline", tmp_path / "venv", tmp_path / "outputs"
    for path in copied_paths():
        if (PROJECT_DIR / path).is_dir():
            shutil.copytree(
                PROJECT_DIR / path,
                workdir / path,
                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
            )
        else:
            workdir.mkdir(exist_ok=True)
            shutil.copy(PROJECT_DIR / path, workdir / path)
    _build_image_python(workdir, venv)

    # The embedded sample and the curated schema, as the image has them (no test split).
    text = Path(
        compile_pipeline(PipelineConfig(test_split=False), str(tmp_path / "ir.json"), image=IMAGE)
    ).read_text()
    spec = json.loads(text)["pipelineSpec"]
    executors = spec["deploymentSpec"]["executors"]
    env = _image_env(venv)

    schema_input = executor_input(spec, "ImportSchemaGen", workdir, outputs)
    _run_container(executors["ImportSchemaGen_executor"]["container"], schema_input, workdir, env)
    assert (outputs / "ImportSchemaGen" / "schema" / "schema.pbtxt").read_text() == (
        PROJECT_DIR / "schemas" / "schema.pbtxt"
    ).read_text()

    # ExampleGen: KFP runs its driver (span and fingerprint), then our ingest executor.
    example_gen = executors["FileBasedExampleGen_executor"]["container"]
    examples_input = executor_input(spec, "FileBasedExampleGen", workdir, outputs)
    _run_container(example_gen["lifecycle"]["preCacheCheck"], examples_input, workdir, env)
    _run_container(example_gen, examples_input, workdir, env)
    examples = outputs / "FileBasedExampleGen" / "examples"
    for split in ("train", "eval", "holdout"):
        assert list((examples / f"Split-{split}").iterdir()), split
    assert read_summary(str(examples))[ACCEPTED] > 2500  # of the sample's 3,000 rows

    # What each task reports back to KFP: its output artifacts, at the URIs it was given.
    for task, key in (("ImportSchemaGen", "schema"), ("FileBasedExampleGen", "examples")):
        reported = json.loads((outputs / task / "executor_output.json").read_text())
        assert reported["artifacts"][key]["artifacts"][0]["uri"] == str(outputs / task / key)
