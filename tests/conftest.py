"""Session fixtures: the real pipeline runs the integration tests read. Importing `components`
first selects Keras 2 before TensorFlow loads (TF_USE_LEGACY_KERAS)."""

import pytest

import components  # noqa: F401
from agnews import cli
from agnews.exit_codes import ExitCode
from tests.helpers.cli import run_args
from tests.helpers.data import PUNCTUATION_ONLY_ROW, sample_lines, score_lines


@pytest.fixture(scope="session")
def first_run(tmp_path_factory):
    """One real pipeline run (LocalDagRunner, 1 epoch) on 300 sample rows plus a token-less row,
    scoring SCORE_ROWS more with BulkInferrer and pushing the linear baseline too (to
    `root/agnews_linear`, beside `root/serving`); returns its directory and the `agnews`
    arguments used."""
    root = tmp_path_factory.mktemp("e2e")
    (root / "score").mkdir()
    (root / "score" / "unlabelled.csv").write_bytes(
        b"\n".join([b"title,description", *score_lines()]) + b"\n"
    )
    (root / "data").mkdir()
    (root / "data" / "train.csv").write_bytes(
        b"\n".join(sample_lines(300) + [PUNCTUATION_ONLY_ROW]) + b"\n"
    )
    args = run_args(root, "--epochs", "1", "--score", str(root / "score"), "--push-baseline")
    assert cli.main(args) == ExitCode.OK
    return root, args


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups into the node ids
def pytest_collection_modifyitems(config, items):
    """`make test` runs two pytest-xdist workers (--dist loadgroup): every test that reads the
    session's pipeline run goes to the worker that made it, so the run is made once and no test
    reads it while another test reruns the pipeline in it. The rest spread over both."""
    for item in items:
        if "first_run" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("pipeline_runs"))
