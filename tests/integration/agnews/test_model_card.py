"""The model card of the first run's pushed version: written by the run itself, rewritten by
`agnews card` only when missing, and each figure equal to its source (TFMA's metrics read
afresh, TFDV's statistics, the registry's history in ML Metadata)."""

import json
import os
import re
import shutil
from pathlib import Path

import pytest
import tensorflow_data_validation as tfdv

from agnews import cli, model_card
from agnews.exit_codes import ExitCode
from components import features
from pipeline import metadata, node_ids, report
from tests.helpers.serving import newest

PER_CLASS = (
    "| class | recall | standard error | examples | precision | standard error | classified as it |"
)


@pytest.fixture
def run_copy(first_run, tmp_path):
    """A copy of the first run's directory (the card test writes in it), and its version."""
    root, _ = first_run
    copy = tmp_path / "run"
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns("*.lock"))
    return copy, int(newest(copy / "serving"))


def _flags(root):
    return [
        "--metadata-path",
        str(root / "metadata.sqlite"),
        "--serving-dir",
        str(root / "serving"),
    ]


def _row(card: str, first_cell: str, section: str = "") -> list[str]:
    """The cells of the table row starting with `first_cell` (after the line `section`)."""
    lines = card.splitlines()
    lines = lines[lines.index(section) :] if section else lines
    line = next(line for line in lines if line.startswith(f"| {first_cell} "))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_the_run_wrote_the_card_and_its_figures_equal_their_sources(first_run, capsys):
    root, _ = first_run
    version = int(newest(root / "serving"))
    directory = model_card.card_dir(str(root / "serving"), version)
    card = Path(directory, "model_card.md").read_text()
    assert os.path.isfile(os.path.join(directory, "model_card.html"))
    assert f"# Model card: agnews version {version}" in card

    store = metadata.open_store(str(root / "metadata.sqlite"))
    run = metadata.latest_run_id(store, "agnews", with_node=node_ids.MODEL_NODES.evaluator)
    outputs = report.run_outputs(store, "agnews", run)
    holdout = report.load_evaluation(outputs["holdout_evaluation"].uri)  # TFMA, not the cache
    evaluation = report.load_evaluation(outputs["evaluation"].uri)
    accuracy = holdout.metrics[""][report.ACCURACY]
    examples = int(holdout.confusion.sum())
    name, value, stderr, shown_examples, baseline = _row(card, "holdout accuracy (never seen")
    assert (value, shown_examples) == (f"{accuracy:.4f}", str(examples))
    assert stderr == f"{(accuracy * (1 - accuracy) / examples) ** 0.5:.4f}"
    assert baseline == f"{holdout.baseline[report.ACCURACY]:.4f}"
    # Recall from TFMA's confusion matrix, which agrees with TFMA's accuracy.
    confusion = evaluation.confusion
    assert confusion.trace() / confusion.sum() == pytest.approx(
        evaluation.metrics[""][report.ACCURACY], abs=1e-6
    )
    for class_id, class_name in enumerate(features.LABEL_NAMES):
        right = confusion[class_id, class_id]
        row = _row(card, class_name, section=PER_CLASS)
        assert row[1] == f"{right / confusion[class_id].sum():.4f}"
        assert row[3] == f"{confusion[class_id].sum():.0f}"
        predicted = confusion[:, class_id].sum()
        assert row[4] == (f"{right / predicted:.4f}" if predicted else "–")

    statistics = tfdv.load_stats_binary(
        os.path.join(outputs["statistics"].uri, "Split-train", "FeatureStats.pb")
    ).datasets[0]
    assert f"the run's train split: {statistics.num_examples} examples" in card
    (label,) = [f for f in statistics.features if f.path.step == [features.LABEL_KEY]]
    total = sum(v.frequency for v in label.string_stats.top_values)
    for value in label.string_stats.top_values:
        class_name = features.LABEL_NAMES[int(value.value)]
        assert f"| {class_name} | {value.frequency / total:.4f} |" in card

    assert cli.main(["models", *_flags(root), "list", "--json"]) == ExitCode.OK
    (entry,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    (change,) = entry["history"]
    assert _row(card, change["time"])[1:3] == [change["action"], change["alias"]]


def test_agnews_card_writes_a_missing_card_and_prints_its_path_last(run_copy, capsys):
    root, version = run_copy
    path = os.path.join(model_card.card_dir(str(root / "serving"), version), "model_card.md")
    os.remove(path)
    assert cli.main(["card", str(version), *_flags(root)]) == ExitCode.OK
    assert capsys.readouterr().out.splitlines()[-1] == path
    written = Path(path).read_text()
    before = os.stat(path).st_mtime_ns
    assert cli.main(["card", str(version), *_flags(root)]) == ExitCode.OK  # there: kept
    assert os.stat(path).st_mtime_ns == before
    assert cli.main(["card", str(version), *_flags(root), "--force"]) == ExitCode.OK
    assert Path(path).read_text() == written  # the same sources, the same card
    assert cli.main(["card", "7", *_flags(root)]) == ExitCode.STOPPED
    assert re.fullmatch(
        r"agnews card failed: version 7 is not registered.*\n", capsys.readouterr().err
    )
