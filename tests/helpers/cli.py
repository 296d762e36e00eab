"""`agnews` as tests run it: the arguments of a run on tiny data, that run itself, and the
command in a fresh interpreter (reporting which heavy stacks it imported)."""

import json
import subprocess
import sys
from pathlib import Path

from agnews.exit_codes import ExitCode
from tests.helpers.data import PUNCTUATION_ONLY_ROW, sample_lines, score_lines

# `agnews` in a fresh interpreter of this environment.
AGNEWS = [sys.executable, "-m", "agnews.cli"]


def run_args(root: Path, *extra: str) -> list[str]:
    """`agnews run` on root/data, writing everything under `root`, in batches of 32 and with no
    accuracy bar (tiny data: one epoch may not clear one)."""
    return [
        *("run", "--data", str(root / "data"), "--pipeline-root", str(root / "pipeline")),
        *("--metadata-path", str(root / "metadata.sqlite"), "--serving-dir", str(root / "serving")),
        *("--batch-size", "32", "--min-accuracy", "0", *extra),
    ]


_CLI_PROBE = r"""
import json, sys
from agnews import cli
try:
    code = cli.main(sys.argv[1:])
except SystemExit as stop:
    code = stop.code
heavy = ("tensorflow", "tfx", "tensorflow_transform", "tensorflow_model_analysis", "apache_beam",
         "google.cloud.aiplatform", "matplotlib")
sys.stdout.flush()
print(json.dumps({"exit": code, "loaded": sorted(m for m in heavy if m in sys.modules)}))
"""


def agnews_subprocess(*args: str, timeout: float = 600):
    """(exit code, heavy modules imported, stdout without the probe line, stderr) of `agnews
    ARGS`."""

    done = subprocess.run(
        [sys.executable, "-c", _CLI_PROBE, *args], capture_output=True, text=True, timeout=timeout
    )
    *output, probe = done.stdout.rstrip("\n").splitlines()
    result = json.loads(probe)
    return result["exit"], set(result["loaded"]), "\n".join(output), done.stderr


def run_pipeline_on_sample(root: Path) -> list[str]:
    """One real pipeline run (`agnews run` in a process of its own, as a user starts it: each
    component forked from it, independent ones at once; 1 epoch) on 300 sample rows plus a
    token-less row,
    scoring SCORE_ROWS more with BulkInferrer and pushing the linear baseline too (to
    `root/agnews_linear`, beside `root/serving`), everything under `root`; returns the `agnews`
    arguments used."""
    (root / "score").mkdir()
    (root / "score" / "unlabelled.csv").write_bytes(
        b"\n".join([b"title,description", *score_lines()]) + b"\n"
    )
    (root / "data").mkdir()
    (root / "data" / "train.csv").write_bytes(
        b"\n".join(sample_lines(300) + [PUNCTUATION_ONLY_ROW]) + b"\n"
    )
    args = run_args(
        root, "--epochs", "1", "--score", str(root / "score"), "--push-baseline", "--workers", "2"
    )
    code, _, output, errors = agnews_subprocess(*args, timeout=900)
    assert code == ExitCode.OK, (output + errors)[-3000:]
    return args
