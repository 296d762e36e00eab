"""One `agnews run` at a time per ML Metadata store and pipeline root.

Two runs on the same store and artifact tree would interleave MLMD writes and could give two
executions the same artifact directory. On a sqlite store each run holds an exclusive lock
(flock) on `<metadata_path>.lock`; on a server store (--metadata-uri) the server's named lock of
the pipeline (MySQL's GET_LOCK), which stops a run from any host, while other pipelines on the
same server run; and, when it is local, on `<pipeline_root>/.agnews-run.lock`. The kernel or the
server releases each when the holder ends, even by `kill -9` (a server lock also once its
holder's host vanished: LOCK_IDLE_TIMEOUT_S), so a crashed run never blocks the next one. Under
Airflow, where each task is its own process, each task holds the lock while it
runs (`held_while`).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import os
import sys
import threading

from pipeline import metadata_connection

# MySQL's limit on a lock name's length.
_MAX_LOCK_NAME = 64
# A server lock's connection is pinged this often, and dropped by the server (releasing the lock)
# after this long without one: how soon a holder whose host vanished stops blocking others.
LOCK_PING_S = 30.0
LOCK_IDLE_TIMEOUT_S = 300


class RunInProgress(RuntimeError):
    """Another live process holds the lock."""


def lock_files(metadata_path: str, pipeline_root: str) -> list[str]:
    """The local lock files (a server store, or a remote pipeline root such as gs://, has
    none)."""
    paths = [f"{metadata_path}.lock", os.path.join(pipeline_root, ".agnews-run.lock")]
    return [path for path in paths if "://" not in path]


@contextlib.contextmanager
def exclusive(metadata_path: str, pipeline_root: str, pipeline_name: str):
    """Holds every lock for the block, or raises RunInProgress naming the holder."""
    with contextlib.ExitStack() as held:
        server = metadata_connection.metadata_server(metadata_path)
        if server is not None:
            holder = f"another agnews run of {pipeline_name}"
            held.enter_context(server_lock(server, f"run.{pipeline_name}", holder))
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


@contextlib.contextmanager
def server_lock(server, name: str, holder: str, wait_s: int = 0):
    """The server's named lock `name` (in the server's database), held by a connection of its
    own for the block: the server releases it when that connection ends, with the process or
    its host. Waits up to `wait_s` for it, then raises RunInProgress naming where the holder
    connects from."""
    lock = lock_name(server, name)
    connection = metadata_connection.connect(server)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT GET_LOCK(%s, %s)", (lock, wait_s))
            (got,) = cursor.fetchone()
            if got != 1:
                cursor.execute(
                    "SELECT HOST FROM information_schema.PROCESSLIST WHERE ID = IS_USED_LOCK(%s)",
                    (lock,),
                )
                found = cursor.fetchone()
                raise RunInProgress(
                    f"{holder} (connected from {found[0] if found else 'a host now gone'}) holds "
                    f"the lock {lock} on the ML Metadata server {server}: wait for it to finish"
                )
            # The server drops a connection idle for this long, and with it the lock: the
            # keeper below pings well within it, and a holder whose host vanished loses it.
            cursor.execute("SET SESSION wait_timeout = %s", (LOCK_IDLE_TIMEOUT_S,))
        stop = threading.Event()
        keeper = threading.Thread(
            target=_keep_alive, args=(connection, stop), name=f"lock {lock}", daemon=True
        )
        keeper.start()
        try:
            yield
        finally:
            stop.set()
            keeper.join()
    finally:
        connection.close()


def _keep_alive(connection, stop: threading.Event) -> None:
    """Pings the lock's connection every LOCK_PING_S until `stop` (the only user of the
    connection meanwhile)."""
    while not stop.wait(LOCK_PING_S):
        try:
            connection.ping(reconnect=False)
        except Exception as error:  # noqa: BLE001 (one line, never a thread's traceback)
            print(
                f"agnews: lost the connection holding a lock on the ML Metadata server ({error});"
                " another run may take it",
                file=sys.stderr,
            )
            return


def lock_name(server, name: str) -> str:
    """`name` in the server's database, within MySQL's length limit (a hash ends a long one)."""
    full = f"agnews.{server.database}.{name}"
    if len(full) <= _MAX_LOCK_NAME:
        return full
    return full[: _MAX_LOCK_NAME - 17] + "." + hashlib.sha256(full.encode()).hexdigest()[:16]


def held_while(function, metadata_path: str, pipeline_root: str, pipeline_name: str):
    """`function` run under `exclusive`: for an orchestrator whose steps are separate processes,
    so that no step writes the store while an `agnews run` (or another step) does. Taking the lock
    also creates the metadata directory, when a step first runs."""

    @functools.wraps(function)
    def locked(*args, **kwargs):
        with exclusive(metadata_path, pipeline_root, pipeline_name):
            return function(*args, **kwargs)

    return locked
