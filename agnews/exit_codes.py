"""The `agnews` commands' exit codes, one place for the CLI, its tests and the docs: scripts and
schedulers (Airflow, cron, a CI job) branch on them."""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0  # done: pushed, not blessed (without --require-push), or nothing new to train on
    STOPPED = 1  # a one-line reason: bad data, config or contract, drift, missing files or model
    NOT_PUSHED = 2  # `run --require-push`: the model (never the baseline) was not pushed
    REFUSED = 3  # `run`: another run holds the same ML Metadata store or pipeline root
    ALERT = 4  # `monitor`: a window crossed a threshold of schemas/monitor.ini
    INTERRUPTED = 130  # Ctrl-C, as shells count it (128 + SIGINT)
