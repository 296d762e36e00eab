"""`agnews run` again in the directory of a finished run, as a daily schedule does: unchanged
data trains and pushes nothing, and a worse candidate is neither blessed nor pushed. These
tests change their run's directory and ML Metadata, so they have a run of their own (the
read-only tests share first_run) and run with the other run-after-run tests (make
test-lifecycle)."""

import json
from pathlib import Path

import pytest
from ml_metadata.proto import metadata_store_pb2

from agnews import cli, predict
from agnews.exit_codes import ExitCode
from components import features, settings, warm_start
from pipeline import metadata, node_ids
from tests.helpers.cli import run_pipeline_on_sample
from tests.helpers.serving import (
    grpc_label_state,
    served_by,
    serving_registry,
    version_dirs,
    wait_for,
)

pytestmark = pytest.mark.lifecycle

UPSTREAM = (
    node_ids.EXAMPLE_GEN,
    node_ids.STATISTICS_GEN,
    node_ids.IMPORT_SCHEMA_GEN,
    node_ids.EXAMPLE_VALIDATOR,
    node_ids.DISTRIBUTION_VALIDATOR,
    node_ids.DRIFT_GATE,
)
TRAINING = (node_ids.TRANSFORM, node_ids.MODEL_NODES.trainer, node_ids.MODEL_NODES.evaluator)


@pytest.fixture(scope="module")
def rerun_root(tmp_path_factory):
    """A run as first_run's (its directory and `agnews run` arguments), which the tests below
    run again in, in file order."""
    root = tmp_path_factory.mktemp("rerun_root")
    return root, run_pipeline_on_sample(root)


def _last_executions(metadata_path: str) -> dict[str, object]:
    store = metadata.open_store(metadata_path)
    last = {}
    for node in UPSTREAM + TRAINING:
        context = store.get_context_by_type_and_name("node", f"agnews.{node}")
        last[node] = max(store.get_executions_by_context(context.id), key=lambda e: e.id)
    return last


def test_a_second_run_on_unchanged_data_trains_and_pushes_nothing(rerun_root, capsys):
    """The data components come from the cache; the served model was trained on this very
    window, so Transform, Trainer and Evaluator are skipped and no version is added."""
    root, args = rerun_root
    served_before = [p.name for p in version_dirs(root / "serving")]
    assert cli.main(args) == ExitCode.OK
    assert "Nothing new to train on" in capsys.readouterr().out
    last = _last_executions(str(root / "metadata.sqlite"))
    assert {node: last[node].last_known_state for node in UPSTREAM} == {
        node: metadata_store_pb2.Execution.CACHED for node in UPSTREAM
    }
    assert all(metadata.skipped(last[node]) for node in TRAINING)
    assert [p.name for p in version_dirs(root / "serving")] == served_before


def test_the_baseline_is_pushed_beside_the_model_and_never_taken_for_it(rerun_root, capsys):
    """--push-baseline: the linear model is served from its own directory beside the model's,
    and each model's last push (its warm start and change threshold) is a model of its own
    Trainer, whichever Pusher pushed last."""
    root, args = rerun_root
    for serving_dir, kind in (
        ("serving", settings.DEFAULT_MODEL),
        (settings.BASELINE_SERVING_MODEL_NAME, settings.BASELINE_MODEL),
    ):
        version = version_dirs(root / serving_dir)[-1]
        assert version.name.isdigit() and (version / "saved_model.pb").is_file()
        assert json.loads((version / warm_start.KIND_FILE).read_text()) == {"model": kind}

    assert cli.main(args) == ExitCode.OK  # nothing new: the resolvers run, nothing trains
    assert "Nothing new to train on" in capsys.readouterr().out
    store = metadata.open_store(str(root / "metadata.sqlite"))
    run_id = metadata.latest_run_id(store, "agnews")
    for nodes in (node_ids.MODEL_NODES, node_ids.BASELINE_NODES):
        (resolved,) = metadata.outputs_in_run(store, "agnews", run_id, nodes.last_pushed, "Model")
        producer = metadata.producer(store, resolved.id)
        assert f"agnews.{nodes.trainer}" in {
            c.name for c in store.get_contexts_by_execution(producer)
        }


def test_a_worse_candidate_is_not_blessed_nor_pushed(rerun_root, capsys):
    root, args = rerun_root
    served_before = [p.name for p in version_dirs(root / "serving")]
    # 0 epochs: an untrained model, about 1 in 4 right, against a bar of 0.5.
    worse = [a for a in args] + [
        "--epochs",
        "0",
        "--min-accuracy",
        "0.5",
        "--require-push",
        "--no-cache",
    ]  # retrain, though the data did not change
    assert cli.main(worse) == ExitCode.NOT_PUSHED
    out = capsys.readouterr().out
    lines = out.splitlines()
    (model_line,) = [i for i, line in enumerate(lines) if line.startswith("Model NOT pushed")]
    assert "`agnews models bless --reason TEXT` pushes it anyway" in lines[model_line]
    assert lines[model_line + 1].startswith(("Baseline pushed to: ", "Baseline NOT pushed: "))
    assert [p.name for p in version_dirs(root / "serving")] == served_before
    store = metadata.open_store(str(root / "metadata.sqlite"))
    blessing = metadata.latest_output(
        store, "agnews", node_ids.MODEL_NODES.evaluator, "ModelBlessing"
    )
    assert blessing.custom_properties["blessed"].int_value == 0
    # Only a blessed model scores: BulkInferrer wrote nothing, and the last run's scores are gone.
    assert "Scores: none (the model was not blessed, and only a blessed model scores)." in out
    inference = metadata.latest_output(store, "agnews", node_ids.BULK_INFERRER, "InferenceResult")
    assert inference is not None and not list(Path(inference.uri).glob("*"))
    assert not (root / "report" / "scores.csv").exists()


def test_an_operator_blesses_the_refused_candidate_and_the_override_is_recorded(rerun_root, capsys):
    """After the worse candidate above: `agnews models bless` pushes it anyway, the servability
    gate's copy (warmup requests included), as a new canary version that a running
    `agnews serve --from-registry` takes in within a poll, its user and reason in the registry's
    history and the Model it pushed in its lineage. The same run twice, and a model
    the Evaluator blessed, are refused."""
    root, _ = rerun_root
    serving = root / "serving"
    flags = ["models", "--metadata-path", str(root / "metadata.sqlite")]
    flags += ["--serving-dir", str(serving)]
    before = {p.name for p in version_dirs(serving)}
    with serving_registry(serving, root / "metadata.sqlite") as (url, port, _):
        (stable,) = map(int, before)
        assert grpc_label_state(port, "stable") == (stable, "AVAILABLE")
        assert cli.main([*flags, "bless", "--reason", "the demo needs it"]) == ExitCode.OK
        (new,) = {p.name for p in version_dirs(serving)} - before
        # The running server loads it within a poll, as canary; stable still answers the rest.
        wait_for(lambda: served_by(url, 3, "/labels/canary") == {int(new): 3}, timeout=120)
        assert grpc_label_state(port, "canary") == (int(new), "AVAILABLE")
        assert served_by(url, 3) == {stable: 3}
    assert f"as version {new}." in capsys.readouterr().out
    assert (serving / new / "assets.extra" / "tf_serving_warmup_requests").is_file()
    (answer,) = predict.predict(str(serving / new), ["Stocks slide"], [""])
    assert answer["label"] in features.LABEL_NAMES

    assert cli.main([*flags, "list", "--json"]) == ExitCode.OK
    listed = {e["version"]: e for e in map(json.loads, capsys.readouterr().out.splitlines())}
    change = listed[int(new)]["history"][-1]
    assert listed[int(new)]["aliases"] == ["canary"]
    assert (change["action"], change["reason"]) == ("bless", "the demo needs it") and change["user"]
    store = metadata.open_store(str(root / "metadata.sqlite"))
    model = metadata.output_in_run(
        store, "agnews", change["run"], node_ids.MODEL_NODES.trainer, "Model"
    )
    readers = [
        event.execution_id
        for event in store.get_events_by_artifact_ids([model.id])
        if event.type == metadata_store_pb2.Event.INPUT
    ]
    blesses = [
        execution
        for execution in store.get_executions_by_id(readers)
        if execution.properties["action"].string_value == "bless"
    ]
    assert len(blesses) == 1  # the override is in the Model's lineage

    assert cli.main([*flags, "bless", "--reason", "again"]) == ExitCode.STOPPED
    assert "was blessed already" in capsys.readouterr().err
    first = min(metadata.run_ids(store, "agnews", with_node=node_ids.MODEL_NODES.evaluator))
    assert cli.main([*flags, "bless", "--run", str(first), "--reason", "x"]) == ExitCode.STOPPED
    assert "was blessed by the Evaluator" in capsys.readouterr().err
