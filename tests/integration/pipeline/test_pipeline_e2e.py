"""The whole pipeline under LocalDagRunner on 300 rows: blesses, pushes, serves, caches."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agnews import cli
from agnews.exit_codes import ExitCode
from agnews.serving import model_config
from components import features, settings
from pipeline import metadata, node_ids
from tests.helpers.cli import agnews_subprocess
from tests.helpers.serving import version_dirs

# Runs in a fresh interpreter with nothing of this project, TFX or Keras 2 on purpose.
LOAD_WITH_TENSORFLOW_ONLY = r"""
import json, sys
import tensorflow as tf
model = tf.saved_model.load(sys.argv[1])
out = model.signatures["serving_default"](
    title=tf.constant(["Stocks slide as oil prices climb", ""]),
    description=tf.constant(["Wall Street fell on Monday.", ""]))
foreign = ("tfx", "tensorflow_transform", "components", "tf_keras")
loaded = sorted(m for m in sys.modules if m.split(".")[0] in foreign)
print(json.dumps({"probabilities": out["probabilities"].numpy().tolist(),
                  "class_id": out["class_id"].numpy().tolist(),
                  "label": [v.decode() for v in out["label"].numpy()],
                  "signatures": sorted(model.signatures), "foreign_modules": loaded}))
"""


def _versions(root, serving_dir: str = "serving"):
    return version_dirs(root / serving_dir)


def test_run_pushes_a_servable_model_in_tf_serving_layout(first_run):
    root, _ = first_run
    versions = _versions(root)
    assert len(versions) == 1 and versions[0].name.isdigit()
    assert (versions[0] / "saved_model.pb").is_file()
    assert (versions[0] / "assets" / features.VOCAB_NAME).is_file()
    assert not (versions[0] / "assets" / features.NGRAM_VOCAB_NAME).exists()  # BiLSTM: no n-grams
    # Registered as the first version, stable, in the config `agnews serve --from-registry` reads.
    (config,) = model_config.read_config_file(str(root / model_config.CONFIG_FILE_NAME))
    assert dict(config.labels) == {"stable": int(versions[0].name)}
    assert config.versions == (int(versions[0].name),)


def test_independent_components_ran_at_once_and_their_lineage_is_tfxs(first_run):
    """`agnews run` forks a process per component (pipeline/parallel_runner.py): the baseline's
    Transform ran beside the model's, per their executions in ML Metadata, and each Trainer
    read the transform graph its own Transform output in the same run. (Caching across runs:
    test_reruns; the run lock and a killed run: test_run_exits.)"""
    root, _ = first_run
    store = metadata.open_store(str(root / "metadata.sqlite"))
    run_id = metadata.latest_run_id(store, "agnews")
    executions = metadata.executions_in_run(store, "agnews", run_id)
    model, baseline = (
        executions[nodes.transform] for nodes in (node_ids.MODEL_NODES, node_ids.BASELINE_NODES)
    )
    assert model.create_time_since_epoch < baseline.last_update_time_since_epoch
    assert baseline.create_time_since_epoch < model.last_update_time_since_epoch
    for nodes in (node_ids.MODEL_NODES, node_ids.BASELINE_NODES):
        graph = metadata.output_in_run(store, "agnews", run_id, nodes.transform, "TransformGraph")
        trainer = executions[nodes.trainer]
        assert metadata.inputs(store, trainer.id, "transform_graph") == [graph.id]
        assert metadata.outcome(trainer) == "ran"


def test_bulk_inferrer_scores_the_score_directory_next_to_the_report(first_run):
    """--score: BulkInferrer scored every row with the blessed model; the run turned its
    PredictionLogs into report/scores.csv, one row per input row with its line number."""
    import csv

    from pipeline import scores
    from tests.helpers.data import SCORE_ROWS

    root, _ = first_run
    with open(root / "report" / scores.PIPELINE_SCORES_FILE_NAME, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == scores.SCORES_HEADER
    assert sorted(int(r["line_number"]) for r in rows) == list(
        range(2, SCORE_ROWS + 2)
    )  # line 1: names
    assert {r["source_file"] for r in rows} == {"unlabelled.csv"}
    assert {r["model_version"] for r in rows} == {_versions(root)[-1].name}
    for row in rows:
        probabilities = [float(row[f"p_{name}"]) for name in features.LABEL_NAMES]
        assert abs(sum(probabilities) - 1) < 1e-5
        assert row["label"] == features.LABEL_NAMES[probabilities.index(max(probabilities))]


def test_the_report_quotes_the_holdout_split_that_training_never_read(first_run):
    from pipeline import report
    from tests.helpers.data import read_examples

    root, _ = first_run
    _, headline = report.write_report(str(root))
    store = metadata.open_store(str(root / "metadata.sqlite"))
    examples = metadata.latest_output(store, "agnews", "FileBasedExampleGen", "Examples")
    holdout_rows = len(read_examples(examples, features.HOLDOUT_SPLIT))
    (row,) = [line for line in headline.splitlines() if line.startswith("| holdout accuracy |")]
    assert f"({holdout_rows} examples, never seen in training or model selection" in row
    (baseline,) = [
        line
        for line in headline.splitlines()
        if line.startswith("| holdout accuracy of the linear baseline |")
    ]
    assert f"({holdout_rows} examples, the same examples)" in baseline
    transformed = [a for a in store.get_artifacts_by_type("Examples") if "/Transform/" in a.uri]
    assert transformed and all(
        features.HOLDOUT_SPLIT not in a.properties["split_names"].string_value for a in transformed
    )  # what the Trainer reads


@pytest.mark.parametrize("serving_dir", ["serving", settings.BASELINE_SERVING_MODEL_NAME])
def test_pushed_model_serves_raw_text_with_tensorflow_alone(first_run, serving_dir):
    """The BiLSTM and the pushed linear baseline (its n-gram vocabulary and TF-IDF weights in
    the graph): loaded and queried by a process that imports TensorFlow and nothing else."""
    root, _ = first_run
    version = _versions(root, serving_dir)[-1]
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    done = subprocess.run(
        [sys.executable, "-c", LOAD_WITH_TENSORFLOW_ONLY, str(version)],
        capture_output=True,
        text=True,
        env=env,
        cwd="/",
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["foreign_modules"] == []
    assert result["signatures"] == sorted(
        [
            features.SERVING_DEFAULT,
            features.SERVING_TF_EXAMPLE,
            features.BATCH_SCORING,
            features.TRANSFORM_FEATURES,
        ]
    )
    for probabilities, class_id, label in zip(
        result["probabilities"], result["class_id"], result["label"], strict=True
    ):
        assert len(probabilities) == features.NUM_CLASSES
        assert abs(sum(probabilities) - 1) < 1e-4 and min(probabilities) >= 0
        assert class_id == probabilities.index(max(probabilities))
        assert label == features.LABEL_NAMES[class_id]


def test_predict_command_prints_a_label_per_headline(first_run, capsys):
    root, _ = first_run
    assert (
        cli.main(["predict", "--model", str(root / "serving"), "Oil prices rise", "Mets win"])
        == ExitCode.OK
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("Model: ")
    assert len(lines) == 3
    assert all(line.split()[0] in features.LABEL_NAMES for line in lines[1:])


def test_predict_needs_tensorflow_alone_and_prints_no_noise(first_run):
    root, _ = first_run
    code, loaded, out, err = agnews_subprocess(
        "predict", "--model", str(root / "serving"), "Oil prices rise"
    )
    assert code == ExitCode.OK
    assert loaded == {"tensorflow"}
    assert out.splitlines()[-1].split()[0] in features.LABEL_NAMES
    assert "Unable to register" not in err and "oneDNN" not in err


def test_agnews_report_reads_no_tfma_tfx_or_beam(first_run):
    root, _ = first_run
    code, loaded, out, _ = agnews_subprocess("report", str(root))
    assert (
        code == ExitCode.OK and "| holdout accuracy | 0." in out and "| eval accuracy | 0." in out
    )
    assert loaded == {"tensorflow", "matplotlib"}


def test_run_writes_a_report_and_agnews_report_rewrites_it(first_run, tmp_path):
    from pipeline import report

    root, _ = first_run
    report_dir = root / "report"
    for name in (report.REPORT_FILE_NAME, report.CURVES_FILE_NAME, report.CONFUSION_FILE_NAME):
        (report_dir / name).unlink()
    assert cli.main(["report", str(root)]) == ExitCode.OK
    text = (report_dir / report.REPORT_FILE_NAME).read_text()
    assert (report_dir / report.CURVES_FILE_NAME).stat().st_size > 1000
    assert (report_dir / report.CONFUSION_FILE_NAME).stat().st_size > 1000
    assert "| eval accuracy | 0." in text and "## Per class" in text
    # The profile: every component's outcome, wall and CPU seconds, as ML Metadata holds them.
    profile = text.split("## Profile of this run")[1].split("\n## ")[0]
    rows = {
        cells[0]: cells[1:]
        for line in profile.splitlines()
        if line.startswith("| ") and not line.startswith(("| component", "| ---", "| **"))
        for cells in [[cell.strip() for cell in line.strip("|").split("|")]]
    }
    outcome, wall, cpu = rows[node_ids.MODEL_NODES.trainer]
    assert outcome == "ran" and float(wall) > 0 and float(cpu) > 0
    # A first run: every node ran; a resolver that finds nothing yet (the analyzer caches) too.
    assert {name: cells[0] for name, cells in rows.items() if cells[0] != "ran"} == {}
    assert node_ids.transform_cache(node_ids.MODEL_NODES.transform) in rows
    assert {node_ids.EXAMPLE_GEN, node_ids.MODEL_NODES.pusher} < set(rows)
    assert "The model's training epochs (1) took " in profile
    (evaluation_uri,) = [
        line.split("evaluation ")[1].split(",")[0]
        for line in text.splitlines()
        if line.startswith("Sources:")
    ]
    evaluation = report.load_evaluation(evaluation_uri)
    cached = [
        json.loads(path.read_text())["metrics"]
        for path in (report_dir / report.EVALUATIONS_DIR_NAME).glob("*.json")
    ]
    # eval, holdout and the baseline's eval (its pushed line quotes it); no test files
    assert len(cached) == 3 and evaluation.metrics in cached
    overall = evaluation.metrics[""]
    assert evaluation.confusion.sum() == overall["example_count"] > 0
    assert set(evaluation.per_class["recall"]) == set(range(features.NUM_CLASSES))
    assert any(name.startswith("label=") for name in evaluation.metrics)
    assert any(name.startswith("length_bucket=") for name in evaluation.metrics)
    assert (
        sum(
            values["example_count"]
            for name, values in evaluation.metrics.items()
            if name.startswith("label=")
        )
        == overall["example_count"]
    )


def test_saved_model_cli_shows_every_signature_and_runs_serving_default(first_run):
    root, _ = first_run
    version = str(_versions(root)[-1])
    saved_model_cli = str(Path(sys.executable).parent / "saved_model_cli")
    show = subprocess.run(
        [saved_model_cli, "show", "--all", "--dir", version],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert show.returncode == 0, show.stderr[-2000:]
    for name in (
        features.SERVING_DEFAULT,
        features.SERVING_TF_EXAMPLE,
        features.BATCH_SCORING,
        features.TRANSFORM_FEATURES,
    ):
        assert f"signature_def['{name}']" in show.stdout
    run = subprocess.run(
        [
            saved_model_cli,
            "run",
            "--dir",
            version,
            "--tag_set",
            "serve",
            "--signature_def",
            features.SERVING_DEFAULT,
            "--input_exprs",
            "title=['Oil prices rise', 'Mets win'];description=['', '']",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == ExitCode.OK, run.stderr[-2000:]
    assert "Result for output key probabilities" in run.stdout
    assert "Result for output key label" in run.stdout


def test_the_evaluators_signature_and_serving_default_agree_on_every_holdout_example(first_run):
    """TFMA scores serving_tf_example; clients call serving_default: same text, same answer."""
    import tensorflow as tf

    from tests.helpers.data import read_examples

    root, _ = first_run
    store = metadata.open_store(str(root / "metadata.sqlite"))
    examples = read_examples(
        metadata.latest_output(store, "agnews", "FileBasedExampleGen", "Examples"),
        features.HOLDOUT_SPLIT,
    )
    model = tf.saved_model.load(str(_versions(root)[-1]))
    text = {
        key: tf.constant([e.features.feature[key].bytes_list.value[0] for e in examples])
        for key in features.TEXT_KEYS
    }
    from_text = model.signatures[features.SERVING_DEFAULT](**text)[features.PROBABILITIES_KEY]
    from_examples = model.signatures[features.SERVING_TF_EXAMPLE](
        examples=tf.constant([e.SerializeToString() for e in examples])
    )[features.PROBABILITIES_KEY]
    assert from_text.shape == (len(examples), features.NUM_CLASSES)
    tf.debugging.assert_near(from_text, from_examples, atol=1e-6)
