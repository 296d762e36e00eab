"""Session fixtures: the real pipeline run the integration tests read, and how `make test`'s
two pytest-xdist workers share the work. Importing `components` first selects Keras 2 before
TensorFlow loads (TF_USE_LEGACY_KERAS)."""

import fcntl
import json
import shutil

import pytest

import components  # noqa: F401
from tests.helpers.cli import run_pipeline_on_sample

# Written into first_run's directory: its `agnews run` arguments once the run is complete, or
# the error that stopped it.
_DONE_FILE = "done.json"
_FAILED_FILE = "failed.txt"


@pytest.fixture(scope="session")
def first_run(tmp_path_factory, worker_id):
    """run_pipeline_on_sample's directory and arguments, made once per test session: the first
    pytest-xdist worker to ask makes it while the other waits, then both read it. No test may
    change it: tests that run the pipeline again have a run of their own (test_reruns), and
    tests that change a served model directory change a copy."""
    shared = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        shared = shared.parent  # each worker's base directory is one under the session's
    root = shared / "first_run"
    done, failed = root / _DONE_FILE, root / _FAILED_FILE
    with open(shared / "first_run.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if failed.exists():
            pytest.fail(f"first_run failed in another worker: {failed.read_text()}")
        if not done.exists():
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir()
            try:
                done.write_text(json.dumps(run_pipeline_on_sample(root)))
            except BaseException as error:
                failed.write_text(f"{type(error).__name__}: {error}")
                raise
    return root, json.loads(done.read_text())


def _uses_a_shared_fixture(item) -> bool:
    """Whether the test uses a module- (or class-, package-) scoped fixture: its module's tests
    then stay on one worker, so the fixture (a server, a Transform run) is made once."""
    definitions = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
    return any(
        fixture.scope in ("module", "class", "package")
        for fixtures in definitions.values()
        for fixture in fixtures
    )


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups into the node ids
def pytest_collection_modifyitems(config, items):
    """`make test` hands work to its two pytest-xdist workers in this order (--dist loadgroup
    --no-loadscope-reorder): one first_run test (its worker makes the run), every test that
    needs no pipeline run (the other worker's work meanwhile), then the rest of the first_run
    tests, modules held together by a shared fixture first, largest first."""
    groups = {}
    for item in items:
        if _uses_a_shared_fixture(item):
            groups[item.nodeid] = item.module.__name__
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))
    reads_first_run = [item for item in items if "first_run" in item.fixturenames]
    if not reads_first_run:
        return
    sizes = {name: list(groups.values()).count(name) for name in set(groups.values())}

    def later(item) -> tuple[int, int]:
        """First the rest of first_run's groups, largest first, then its single tests."""
        return (0, -sizes[groups[item.nodeid]]) if item.nodeid in groups else (1, 0)

    opener = next((item for item in reads_first_run if item.nodeid not in groups), None)
    opener = opener or reads_first_run[0]
    opening_group = groups.get(opener.nodeid)
    opening = [
        item
        for item in reads_first_run
        if item is opener or (opening_group and groups.get(item.nodeid) == opening_group)
    ]
    rest = sorted((item for item in reads_first_run if item not in opening), key=later)
    without_run = [item for item in items if "first_run" not in item.fixturenames]
    items[:] = [*opening, *without_run, *rest]
