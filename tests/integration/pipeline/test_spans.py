"""A pipeline that lives: `agnews run` on a directory of spans, run after run, as a scheduler
would (real processes, one ML Metadata store): a cold first span, a warm-started window of two
spans, a drifted span refused then accepted while a server follows the registry (the third
push reaches it as canary; a promotion and a rollback each within a poll), and a rerun with
nothing new."""

import csv
import gzip
import io
import re
import subprocess
from pathlib import Path

import pytest

from agnews import cli
from agnews.exit_codes import ExitCode
from components import features
from pipeline import metadata, node_ids
from tests.helpers.cli import AGNEWS, run_args
from tests.helpers.data import sample_lines
from tests.helpers.serving import (
    grpc_label_state,
    served_by,
    serving_registry,
    state,
    version_dirs,
    wait_for,
)

pytestmark = pytest.mark.lifecycle

ROWS_PER_SPAN = 1000  # spans of 500 rows or fewer can drift by noise (schemas/drift.ini)


def _write_span(data: Path, span: int, lines: list[bytes], gzipped: bool = False) -> None:
    folder = data / f"span-{span}"
    folder.mkdir(parents=True)
    body = b"\n".join(lines) + b"\n"
    if gzipped:
        (folder / "train.csv.gz").write_bytes(gzip.compress(body))
    else:
        (folder / "train.csv").write_bytes(body)


def _label(line: bytes) -> int:
    return int(next(csv.reader(io.StringIO(line.decode())))[0])


def _run(root: Path, *extra: str, baseline: bool = False) -> subprocess.CompletedProcess:
    no_baseline = [] if baseline else ["--no-baseline"]
    return subprocess.run(
        [
            *AGNEWS,
            *run_args(root, "--epochs", "1", *no_baseline, "--max-accuracy-drop", "1", *extra),
        ],
        capture_output=True,
        text=True,
        timeout=1200,
    )


def _last_execution(store, node: str):
    context = store.get_context_by_type_and_name("node", f"agnews.{node}")
    return max(store.get_executions_by_context(context.id), key=lambda e: e.id)


def test_spans_window_drift_and_nothing_new(tmp_path):
    lines = sample_lines(3000)
    data, serving = tmp_path / "data", tmp_path / "serving"
    _write_span(data, 1, lines[:ROWS_PER_SPAN])
    _write_span(data, 2, lines[ROWS_PER_SPAN : 2 * ROWS_PER_SPAN], gzipped=True)

    # Span 2 is the newest: a backfill of span 1 first, then the newest span.
    first = _run(tmp_path, "--span", "1")
    assert first.returncode == ExitCode.OK, first.stdout[-3000:] + first.stderr[-3000:]
    assert "first span" in first.stdout and "Trained on spans 1." in first.stdout
    assert len([p.name for p in version_dirs(serving)]) == 1
    # --no-baseline: no baseline node ran, and the report's headline has no baseline row.
    assert "| holdout accuracy |" in first.stdout
    assert "holdout accuracy of the" not in first.stdout
    assert not (tmp_path / "pipeline" / node_ids.BASELINE_NODES.trainer).exists()
    # A run log a person reads: a line per component, Keras's epochs, the summary; the
    # libraries' logs are in the file it names.
    assert "  FileBasedExampleGen" in first.stdout and "span 1: 1000 rows accepted" in first.stdout
    assert "WARNING" not in first.stdout + first.stderr and first.stderr == ""
    assert len(first.stdout.splitlines()) < 60, first.stdout
    log_file = first.stdout.split("Full log: ")[1].split()[0]
    # The run's profile: each component's wall and CPU seconds, then the whole run's and the
    # share of it the model's epochs took.
    (trainer_line,) = [
        line
        for line in first.stdout.splitlines()
        if line.startswith(f"  {node_ids.MODEL_NODES.trainer} ")
    ]
    trainer_wall, trainer_cpu = map(float, re.findall(r"([\d.]+) s", trainer_line)[:2])
    assert trainer_wall > 0 and trainer_cpu > 0 and "CPU  ran" in trainer_line
    profile = re.search(
        r"Profile: ([\d.]+) s, ([\d.]+) s CPU \(\d+% of one core\); "
        r"the model's training epochs \(1\) took ([\d.]+) s",
        first.stdout,
    )
    assert profile, first.stdout
    run_wall, run_cpu, epochs = map(float, profile.groups())
    assert 0 < epochs < trainer_wall < run_wall and run_cpu > trainer_cpu
    assert "Component Transform is finished." in Path(log_file).read_text()

    second = _run(tmp_path)
    assert second.returncode == ExitCode.OK, second.stdout[-3000:] + second.stderr[-3000:]
    assert "Trained on spans 1, 2." in second.stdout
    assert len([p.name for p in version_dirs(serving)]) == 2
    store = metadata.open_store(str(tmp_path / "metadata.sqlite"))
    models = sorted(store.get_artifacts_by_type("Model"), key=lambda a: a.id)
    trainer = _last_execution(store, "Trainer")
    assert metadata.inputs(store, trainer.id, "base_model") == [
        models[0].id
    ]  # warm-started from span 1's
    transform = _last_execution(store, "Transform")
    caches = sorted(store.get_artifacts_by_type("TransformCache"), key=lambda a: a.id)
    assert metadata.inputs(store, transform.id, "analyzer_cache") == [caches[0].id]
    spans = {
        metadata.span(a)
        for a in store.get_artifacts_by_id(metadata.inputs(store, transform.id, "examples"))
    }
    assert spans == {1, 2}

    # From here a server follows the registry, as production does, while the schedule goes on.
    with serving_registry(serving, tmp_path / "metadata.sqlite") as (url, port, _):
        _drifted_span_refused_then_accepted(tmp_path, lines, store)
        _the_third_push_reaches_the_server_and_the_registry_moves_it(tmp_path, url, port)
    versions = [p.name for p in version_dirs(serving)]

    again = _run(tmp_path, "--accept-drift")
    assert again.returncode == ExitCode.OK, again.stdout[-3000:] + again.stderr[-3000:]
    assert "Nothing new to train on" in again.stdout
    assert [p.name for p in version_dirs(serving)] == versions

    # The same window, the baseline now asked for: it was never pushed, so the run trains.
    baseline_serving = tmp_path / "agnews_linear"
    with_baseline = _run(tmp_path, "--accept-drift", "--push-baseline", baseline=True)
    assert with_baseline.returncode == ExitCode.OK, (
        with_baseline.stdout[-3000:] + with_baseline.stderr[-3000:]
    )
    assert "Baseline pushed to: " in with_baseline.stdout
    assert len(version_dirs(baseline_serving)) == 1
    both_pushed = _run(tmp_path, "--accept-drift", "--push-baseline", baseline=True)
    assert "Nothing new to train on" in both_pushed.stdout
    assert len(version_dirs(baseline_serving)) == 1


def _drifted_span_refused_then_accepted(root: Path, lines: list[bytes], store) -> None:
    """Span 3: nearly all Sports. The run stops before Transform, nothing new is served; with
    --accept-drift it trains on spans 1-3 and pushes a third version."""
    sports = [line for line in lines[2 * ROWS_PER_SPAN :] if _label(line) == 2]
    _write_span(root / "data", 3, sports[: ROWS_PER_SPAN - 10] + lines[-10:])
    drifted = _run(root)
    assert drifted.returncode == ExitCode.STOPPED, drifted.stdout[-3000:] + drifted.stderr[-3000:]
    assert f"{features.LABEL_KEY}: infinity_norm" in drifted.stderr
    assert "Traceback" not in drifted.stderr and "--accept-drift" in drifted.stderr
    assert len([p.name for p in version_dirs(root / "serving")]) == 2
    assert (
        len(
            store.get_executions_by_context(
                store.get_context_by_type_and_name("node", "agnews.Trainer").id
            )
        )
        == 2
    )

    accepted = _run(root, "--accept-drift")
    assert accepted.returncode == ExitCode.OK, accepted.stdout[-3000:] + accepted.stderr[-3000:]
    assert "Trained on spans 1, 2, 3." in accepted.stdout


def _the_third_push_reaches_the_server_and_the_registry_moves_it(root: Path, url, port) -> None:
    """Three runs pushed three versions: the first is stable, each later one canary in its turn
    (the second is no longer served). The third reached the running server as canary; a
    promotion and a rollback each reach it within a poll, over REST and gRPC."""
    first, second, third = (int(p.name) for p in version_dirs(root / "serving"))
    wait_for(lambda: state(url, third) == "AVAILABLE", timeout=120)
    wait_for(lambda: state(url, second) in (None, "END"), timeout=60)
    assert grpc_label_state(port, "stable") == (first, "AVAILABLE")
    assert grpc_label_state(port, "canary") == (third, "AVAILABLE")
    assert served_by(url, 5, "/labels/canary") == {third: 5}
    assert served_by(url, 5) == {first: 5}  # no --canary-percent: canary takes only asked-for calls
    models = ["models", "--metadata-path", str(root / "metadata.sqlite")]
    models += ["--serving-dir", str(root / "serving")]

    assert cli.main([*models, "promote", str(third), "--to", "stable", "--reason", "good"]) == 0
    wait_for(lambda: served_by(url, 5) == {third: 5}, timeout=30)
    assert grpc_label_state(port, "stable") == (third, "AVAILABLE")
    assert cli.main([*models, "rollback", "--reason", "complaints"]) == 0
    wait_for(lambda: served_by(url, 5) == {first: 5}, timeout=120)
    assert grpc_label_state(port, "stable") == (first, "AVAILABLE")
