"""`agnews` in a fresh interpreter, reporting which heavy stacks the command imported."""

import json
import subprocess
import sys

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


def agnews_subprocess(*args: str):
    """(exit code, heavy modules imported, stdout without the probe line, stderr) of `agnews
    ARGS`."""

    done = subprocess.run(
        [sys.executable, "-c", _CLI_PROBE, *args], capture_output=True, text=True, timeout=600
    )
    *output, probe = done.stdout.rstrip("\n").splitlines()
    result = json.loads(probe)
    return result["exit"], set(result["loaded"]), "\n".join(output), done.stderr
