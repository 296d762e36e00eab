"""The layout's rules: dependencies point one way, components <- pipeline <- agnews, and what
runs against a pushed model loads nothing of TFX."""

import ast
import json
import subprocess
import sys

import pytest

from pipeline.config import PROJECT_DIR

PACKAGES = ("components", "pipeline", "agnews")
# A package may import the packages before it in PACKAGES, never those after it.
ALLOWED = {package: set(PACKAGES[: i + 1]) for i, package in enumerate(PACKAGES)}
# Modules of agnews that a model server or a client machine runs: TensorFlow, TF Serving's protos,
# TFDV at most, never TFX (a package `tfx` import drags in Beam, TFMA and the AI Platform clients).
NO_TFX_MODULES = (
    "agnews.cli",
    "agnews.versions",
    "agnews.predict",
    "agnews.skew",
    "agnews.registry",
    "agnews.monitor",
    "agnews.models_command",
    "agnews.serving.server",
    # agnews score, with what its Beam job imports when it runs.
    "agnews.score",
    "components.rows",
    "pipeline.beam_packaging",
    "tfx_bsl.public.beam.run_inference",
)


def imported_modules(path) -> set[str]:
    """Every module a file imports, at module level or inside functions."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def _sources(package: str):
    return sorted((PROJECT_DIR / package).rglob("*.py"))


@pytest.mark.parametrize("package", PACKAGES)
def test_dependencies_point_one_way(package):
    wrong = {
        f"{path.relative_to(PROJECT_DIR)} imports {name}"
        for path in _sources(package)
        for name in imported_modules(path)
        if name.split(".")[0] in PACKAGES and name.split(".")[0] not in ALLOWED[package]
    }
    assert not wrong, sorted(wrong)


def test_agnews_never_imports_tfx_itself():
    """`agnews run`/`compile`/`report` reach TFX through the pipeline package only."""
    direct = {
        f"{path.relative_to(PROJECT_DIR)} imports {name}"
        for path in _sources("agnews")
        for name in imported_modules(path)
        if name.split(".")[0] == "tfx"
    }
    assert not direct, sorted(direct)


def test_the_server_and_the_clients_load_no_tfx():
    """Imported in a fresh interpreter, the runtime modules leave TFX and TFMA unloaded (skew's
    TFDV brings Beam, which is TFDV's own engine)."""
    probe = (
        "import importlib, json, sys\n"
        f"for name in {NO_TFX_MODULES!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in ('tfx', 'tensorflow_model_analysis') "
        "if m in sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, cwd=PROJECT_DIR
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.splitlines()[-1]) == []
