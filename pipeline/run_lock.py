"""One `agnews run` at a time per ML Metadata store and pipeline root.

Two runs on the same sqlite file and artifact tree would interleave MLMD writes and could
give two executions the same artifact directory. Each run holds an exclusive lock (flock) on
`<metadata_path>.lock` and `<pipeline_root>/.agnews-run.lock`; the kernel releases it when the
process ends, even by `kill -9`, so a crashed run never blocks the next one. Under Airflow,
where each task is its own process, each task holds the lock while it runs (`held_while`).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os


class RunInProgress(RuntimeError):
    """Another live process holds the lock."""


def lock_files(metadata_path: str, pipeline_root: str) -> list[str]:
    """The local lock files (a remote pipeline root, e.g. gs://, has none)."""
    paths = [f"{metadata_path}.lock", os.path.join(pipeline_root, ".agnews-run.lock")]
    return [path for path in paths if "://" not in path]


@contextlib.contextmanager
def exclusive(metadata_path: str, pipeline_root: str):
    """Holds every lock for the block, or raises RunInProgress naming the holder's pid."""
    with contextlib.ExitStack() as held:
        for path in lock_files(metadata_path, pipeline_root):
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            handle = held.enter_context(open(path, "a+"))
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "?"
                raise RunInProgress(
                    f"another agnews run (pid {holder}) is using {path.removesuffix('.lock')}: "
                    "wait for it to finish, or give this run its own --metadata-path and "
                    "--pipeline-root."
                ) from None
            handle.seek(0)
            handle.truncate()
            handle.write(str(os.getpid()))
            handle.flush()
        yield


def held_while(function, metadata_path: str, pipeline_root: str):
    """`function` run under `exclusive`: for an orchestrator whose steps are separate processes,
    so that no step writes the store while an `agnews run` (or another step) does. Taking the lock
    also creates the metadata directory, when a step first runs."""

    @functools.wraps(function)
    def locked(*args, **kwargs):
        with exclusive(metadata_path, pipeline_root):
            return function(*args, **kwargs)

    return locked
