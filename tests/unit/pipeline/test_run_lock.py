"""The run lock as an orchestrator's step takes it (each Airflow task, in its own process)."""

import pytest

from pipeline import run_lock


def test_a_step_holds_the_lock_while_it_runs_and_creates_the_metadata_directory(tmp_path):
    metadata_path, root = str(tmp_path / "runs" / "metadata.sqlite"), str(tmp_path / "root")

    def step(value):
        # While the step runs, a second run on the same store is refused.
        with (
            pytest.raises(run_lock.RunInProgress, match="another agnews run"),
            run_lock.exclusive(metadata_path, root, "agnews"),
        ):
            pass
        return value * 2

    assert run_lock.held_while(step, metadata_path, root, "agnews")(21) == 42
    assert (tmp_path / "runs").is_dir()
    with run_lock.exclusive(metadata_path, root, "agnews"):  # released when the step ended
        pass


def test_a_step_is_refused_while_another_run_holds_the_lock(tmp_path):
    metadata_path, root = str(tmp_path / "metadata.sqlite"), str(tmp_path / "root")
    ran = []
    with (
        run_lock.exclusive(metadata_path, root, "agnews"),
        pytest.raises(run_lock.RunInProgress, match=f"is using {metadata_path}"),
    ):
        run_lock.held_while(ran.append, metadata_path, root, "agnews")("ran")
    assert ran == []
