"""`agnews score`: real Beam pipelines (tfx_bsl RunInference) over the first run's pushed model."""

import csv
import gzip
import json
import urllib.request

import numpy as np
import pytest
import tensorflow as tf

from agnews import cli, predict, versions
from agnews.exit_codes import ExitCode
from agnews.serving.server import ServeOptions, running_in_thread
from components import artifacts, features, rows
from pipeline import metadata
from pipeline.scores import (
    JOB_SUMMARY_FILE_NAME,
    PREDICTION_LOGS_PREFIX,
    SCORES_PREFIX,
    score_fields,
)
from tests.helpers.cli import agnews_subprocess
from tests.helpers.data import sample_lines, score_lines


def _scores(out_dir) -> dict[tuple[str, int], dict]:
    rows = {}
    for path in sorted(out_dir.glob(f"{SCORES_PREFIX}-*.csv")):
        with open(path, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                rows[(row["source_file"], int(row["line_number"]))] = row
    return rows


def _probabilities(row) -> list[float]:
    return [float(row[f"p_{name}"]) for name in features.LABEL_NAMES]


def _rejected(out_dir) -> list[tuple[str, int, str]]:
    with open(out_dir / artifacts.REJECTED_FILE_NAME, newline="", encoding="utf-8") as handle:
        return sorted(
            (r["source_file"], int(r["line_number"]), r["reason"]) for r in csv.DictReader(handle)
        )


@pytest.fixture(scope="module")
def mixed_input(tmp_path_factory):
    """Every input form, with bad rows at known lines: labelled CSV, unlabelled CSV.gz below a
    line of column names (in a subdirectory), and gzipped TFRecords of tf.Examples."""
    root = tmp_path_factory.mktemp("score_input")
    labelled = sample_lines(60)
    labelled.insert(4, b'"7","bad label","x"')  # line 5
    labelled.insert(9, b'"2","cut short')  # line 10
    (root / "labelled.csv").write_bytes(b"\n".join(labelled) + b"\n")
    unlabelled = [b"title,description", *score_lines()[:20]]
    unlabelled.insert(3, b'"only a title"')  # line 4: one field
    unlabelled.insert(6, b'"caf\xe9","latin-1"')  # line 7
    (root / "more").mkdir()
    with gzip.open(root / "more" / "unlabelled.csv.gz", "wb") as handle:
        handle.write(b"\n".join(unlabelled) + b"\n")
    with tf.io.TFRecordWriter(str(root / "examples.tfrecord.gz"), "GZIP") as writer:
        for i in range(8):
            writer.write(
                rows.make_example(None, f"Stocks fall {i}", "Markets slid.").SerializeToString()
            )
        writer.write(b"not a tf.Example")  # record 9
        writer.write(rows.make_example(1, " ", "").SerializeToString())  # record 10: no text
    expected_rejected = [
        ("examples.tfrecord.gz", 9, rows.NOT_A_TF_EXAMPLE),
        ("examples.tfrecord.gz", 10, rows.EMPTY_TEXT),
        ("labelled.csv", 5, rows.LABEL_NOT_1_TO_4),
        ("labelled.csv", 10, rows.UNTERMINATED_QUOTE),
        ("more/unlabelled.csv.gz", 4, rows.WRONG_COLUMN_COUNT),
        ("more/unlabelled.csv.gz", 7, rows.INVALID_UTF8),
    ]
    return root, len(labelled) + len(unlabelled) - 1 + 10, expected_rejected


@pytest.mark.parametrize(
    "beam_args",
    [
        [],
        ["--beam-arg=--direct_running_mode=multi_processing", "--beam-arg=--direct_num_workers=2"],
    ],
    ids=["in_memory", "multi_processing_2_workers"],
)
def test_every_row_is_scored_or_rejected_with_its_line(
    first_run, mixed_input, tmp_path, capsys, beam_args
):
    root, _ = first_run
    data, total_rows, expected_rejected = mixed_input
    out = tmp_path / "out"
    code = cli.main(
        [
            "score",
            str(data / "labelled.csv"),
            str(data / "more"),
            str(data / "*.tfrecord.gz"),
            "--model",
            str(root / "serving"),
            "--output",
            str(out),
            "--prediction-logs",
            "--max-bad-fraction",
            "0.1",
            *beam_args,
        ]
    )
    printed = capsys.readouterr().out
    assert code == ExitCode.OK
    rejected = _rejected(out)
    assert rejected == expected_rejected
    scores = _scores(out)
    assert len(scores) + len(rejected) == total_rows
    assert not set(scores) & {(name, line) for name, line, _ in rejected}
    assert ("more/unlabelled.csv.gz", 1) not in scores  # the column names are no row
    version = versions.model_versions(str(root / "serving"))[-1]
    for row in scores.values():
        probabilities = _probabilities(row)
        assert row["label"] == features.LABEL_NAMES[int(np.argmax(probabilities))]
        assert abs(sum(probabilities) - 1) < 1e-5 and row["model_version"] == str(version)
    summary = json.loads((out / JOB_SUMMARY_FILE_NAME).read_text())
    assert summary["rows"][artifacts.ACCEPTED] == len(scores)
    # The model is loaded once per worker process, not once per bundle or batch.
    assert summary["model_loads"] == 1 if not beam_args else 1 <= summary["model_loads"] <= 2
    records = list(
        tf.data.TFRecordDataset(
            [str(p) for p in out.glob(f"{PREDICTION_LOGS_PREFIX}-*.gz")],
            compression_type="GZIP",
        )
    )
    assert len(records) == len(scores)
    assert f"scored {len(scores)}, rejected {len(rejected)}" in printed


def test_score_predict_serve_and_bulk_inferrer_give_the_same_probabilities(first_run, tmp_path):
    """The same text through every way to run the model: equal to 1e-5."""
    root, _ = first_run
    data = tmp_path / "data"
    data.mkdir()
    (data / "rows.csv").write_bytes(b"\n".join(score_lines()) + b"\n")
    out = tmp_path / "out"
    assert (
        cli.main(["score", str(data), "--model", str(root / "serving"), "--output", str(out)])
        == ExitCode.OK
    )
    scores = _scores(out)
    texts = [rows.parse_line(line, form=rows.UNLABELLED_CSV)[1:] for line in score_lines()]
    from_score = np.array(
        [_probabilities(scores[("rows.csv", i)]) for i in range(1, len(texts) + 1)]
    )

    version_dir = versions.resolve_version_dir(str(root / "serving"))
    from_predict = np.array(
        [
            list(r["probabilities"].values())
            for r in predict.predict(version_dir, [t for t, _ in texts], [d for _, d in texts])
        ]
    )

    with running_in_thread(
        ServeOptions(model_base_path=str(root / "serving"), rest_port=0, grpc_port=None)
    ) as server:
        body = json.dumps(
            {"instances": [{"title": t, "description": d} for t, d in texts]}
        ).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{server.rest_port}/v1/models/agnews:predict",
            data=body,
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            predictions = json.loads(response.read())["predictions"]
    from_serve = np.array([p[features.PROBABILITIES_KEY] for p in predictions])

    # BulkInferrer's PredictionLogs of the same rows (the first run scored them, line = row + 1).
    store = metadata.open_store(str(root / "metadata.sqlite"))
    results = [
        a for a in store.get_artifacts_by_type("InferenceResult") if tf.io.gfile.glob(f"{a.uri}/*")
    ]
    bulk = {}
    for record in tf.data.TFRecordDataset(
        tf.io.gfile.glob(f"{results[0].uri}/*"), compression_type="GZIP"
    ):
        from tensorflow_serving.apis import prediction_log_pb2

        row = score_fields(prediction_log_pb2.PredictionLog.FromString(record.numpy()), "")
        bulk[row[1]] = [float(p) for p in row[3 : 3 + features.NUM_CLASSES]]
    from_bulk_inferrer = np.array([bulk[i + 1] for i in range(1, len(texts) + 1)])

    assert from_score.shape == (len(texts), features.NUM_CLASSES)
    for other in (from_predict, from_serve, from_bulk_inferrer):
        np.testing.assert_allclose(from_score, other, atol=1e-5, rtol=0)


def test_too_many_bad_rows_stop_the_job_and_keep_no_scores(first_run, tmp_path, capsys):
    root, _ = first_run
    data = tmp_path / "data"
    data.mkdir()
    (data / "rows.csv").write_bytes(b"\n".join(score_lines()[:10] + [b'"x","y","z","w"']) + b"\n")
    out = tmp_path / "out"
    assert (
        cli.main(["score", str(data), "--model", str(root / "serving"), "--output", str(out)])
        == ExitCode.STOPPED
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("agnews score failed: 1 of 11 input rows")
    assert "--max-bad-fraction" in err[0]
    assert _rejected(out) == [("rows.csv", 11, rows.WRONG_COLUMN_COUNT)]
    assert not list(out.glob(f"{SCORES_PREFIX}-*")) and not (out / JOB_SUMMARY_FILE_NAME).exists()
    # Rerun over the stopped job's output with a looser limit.
    assert (
        cli.main(
            [
                "score",
                str(data),
                "--model",
                str(root / "serving"),
                "--output",
                str(out),
                "--overwrite",
                "--max-bad-fraction",
                "0.1",
            ]
        )
        == ExitCode.OK
    )
    assert sorted(_scores(out)) == [("rows.csv", line) for line in range(1, 11)]
    assert (out / JOB_SUMMARY_FILE_NAME).exists()


def _one_line_error(capsys, args) -> str:
    assert cli.main(["score", *args]) == ExitCode.STOPPED
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err + captured.out, captured.err
    assert lines[0].startswith("agnews score failed: ")
    return lines[0]


def test_clear_one_line_errors(first_run, tmp_path, capsys):
    root, _ = first_run
    data = tmp_path / "data"
    data.mkdir()
    (data / "rows.csv").write_bytes(b"\n".join(score_lines()[:3]) + b"\n")
    (tmp_path / "no_versions").mkdir()
    model = ["--model", str(root / "serving")]

    assert "No SavedModel in" in _one_line_error(
        capsys,
        [str(data), "--model", str(tmp_path / "no_versions"), "--output", str(tmp_path / "o1")],
    )
    assert "No input file at" in _one_line_error(
        capsys, [str(tmp_path / "missing.csv"), *model, "--output", str(tmp_path / "o2")]
    )
    (tmp_path / "broken.csv.gz").write_bytes(b"not gzip")
    message = _one_line_error(
        capsys, [str(tmp_path / "broken.csv.gz"), *model, "--output", str(tmp_path / "o3")]
    )
    assert message.startswith(f"agnews score failed: Cannot read {tmp_path / 'broken.csv.gz'}:")
    (tmp_path / "empty.csv").write_bytes(b"")
    assert "holds no rows" in _one_line_error(
        capsys, [str(tmp_path / "empty.csv"), *model, "--output", str(tmp_path / "o4")]
    )
    old_model = tf.Module()
    old_model.serve = tf.function(
        lambda examples: {"x": tf.strings.length(examples)},
        input_signature=[tf.TensorSpec([None], tf.string)],
    )
    tf.saved_model.save(
        old_model, str(tmp_path / "old" / "1"), signatures={"serving_default": old_model.serve}
    )
    assert "has no batch_scoring signature" in _one_line_error(
        capsys, [str(data), "--model", str(tmp_path / "old"), "--output", str(tmp_path / "o5")]
    )
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "old.csv").write_text("x")
    assert "is not empty" in _one_line_error(
        capsys, [str(data), *model, "--output", str(tmp_path / "used")]
    )
    assert "did not write (old.csv" in _one_line_error(
        capsys, [str(data), *model, "--output", str(tmp_path / "used"), "--overwrite"]
    )


def test_score_help_says_how_the_form_is_told_and_needs_no_tensorflow():
    code, loaded, out, _ = agnews_subprocess("score", "--help")
    assert code == ExitCode.OK and not loaded & {"tensorflow", "apache_beam", "tfx"}
    assert "first line" in out and "tfrecord" in out and "summary.json" in out
