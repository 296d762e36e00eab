"""`agnews monitor`: what the server answered since the last look, against what the model was
trained on and against the window before; an alert when a threshold in schemas/monitor.ini is
crossed.

A window is the request-log files (`agnews serve --log-requests`, PredictionLog TFRecords, closed
files only) that no earlier run read; the files read and the window's figures are kept in the
report directory's state file, written last, so a run killed midway reads the same window again.
Measures, each against the served model's training data (the train split's TFDV statistics of
the run that pushed the version that answered most of the window, found in ML Metadata) and
against the previous window:
- the predicted-class mix: L-infinity distance of the class shares (the label mix of training);
- per text feature, the relative change of the mean length (as the drift gate measures spans);
- the share of tokens outside the model's vocabulary (tokenized as the model does, by
  components.text), against the previous window: a new vocabulary (topics, a language, a client
  sending something else) shows here first.
"""

from __future__ import annotations

import collections
import configparser
import dataclasses
import datetime
import json
import os
import urllib.request
from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from agnews.serving.model_config import write_atomically
from agnews.serving.request_log import SUFFIX
from components import features, text
from pipeline.config import MONITOR_THRESHOLDS_FILE

STATE_FILE_NAME = "monitor_state.json"
REPORT_PREFIX = "monitor-"
EXPORT_FILE_NAME = "requests.csv"


class MonitorError(ValueError):
    """A monitor run that cannot be done, said in one line."""


@dataclasses.dataclass
class Window:
    """What one window of logged requests held."""

    files: list[str]
    rows: int
    versions: dict[str, int]  # "model:version" -> rows it answered
    class_mix: dict[str, float]  # predicted label name -> share of rows
    mean_length: dict[str, float]  # text feature -> mean length in bytes
    oov_rate: float | None  # share of tokens outside the vocabulary (None: no vocabulary)


@dataclasses.dataclass
class Check:
    measure: str  # e.g. "class_mix vs training"
    value: float
    threshold: float | None  # None: reported, not judged (too few rows, or no threshold)

    @property
    def alert(self) -> bool:
        return self.threshold is not None and self.value > self.threshold


@dataclasses.dataclass
class Result:
    window: Window
    checks: list[Check]
    reference: str  # what "training" means here, or why there is none
    report_path: str
    exported: str | None

    @property
    def alerts(self) -> list[Check]:
        return [check for check in self.checks if check.alert]


def read_thresholds(path: Path = MONITOR_THRESHOLDS_FILE) -> tuple[int, dict[str, float]]:
    """(min_rows, measure -> threshold) from schemas/monitor.ini."""
    parser = configparser.ConfigParser()
    if not parser.read(path):
        raise MonitorError(f"cannot read the thresholds file {path}")
    try:
        min_rows = parser.getint("window", "min_rows")
        thresholds = {
            f"{section} {key}": float(value)
            for section in parser.sections()
            if section != "window"
            for key, value in parser.items(section)
        }
    except (configparser.Error, ValueError) as error:
        raise MonitorError(f"{path}: {error}") from None
    return min_rows, thresholds


def new_log_files(logs_dir: str, already_read: set[str]) -> list[str]:
    """The closed log files of `logs_dir` that no earlier run read, oldest name first."""
    paths = sorted(tf.io.gfile.glob(os.path.join(logs_dir, f"*{SUFFIX}")))
    return [path for path in paths if os.path.basename(path) not in already_read]


def read_requests(paths: list[str]) -> list[tuple[str, str, str, str]]:
    """(model:version, title, description, predicted label) of every logged row."""
    rows = []
    for record in tf.data.TFRecordDataset(paths) if paths else []:
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy()).predict_log
        spec = log.request.model_spec
        columns = [tf.make_ndarray(log.request.inputs[key]) for key in features.TEXT_KEYS] + [
            tf.make_ndarray(log.response.outputs[features.LABEL_NAME_KEY])
        ]
        for title, description, label in zip(*columns, strict=True):
            rows.append(
                (
                    f"{spec.name}:{spec.version.value}",
                    title.decode(),
                    description.decode(),
                    label.decode(),
                )
            )
    return rows


def read_vocabulary(version_dir: str) -> set[str] | None:
    path = os.path.join(version_dir, "assets", features.VOCAB_NAME)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as handle:
        return {line.rstrip("\n") for line in handle}


def oov_rate(titles: list[str], descriptions: list[str], vocabulary: set[str]) -> float:
    """The share of tokens (as the model tokenizes title + description) outside `vocabulary`."""
    tokens = text.tokenize(tf.constant(titles), tf.constant(descriptions)).flat_values.numpy()
    if not len(tokens):
        return 0.0
    return float(np.mean([token.decode() not in vocabulary for token in tokens]))


def summarize(paths: list[str], rows: list[tuple[str, str, str, str]], model_dir: str) -> Window:
    """The window's figures; the vocabulary is that of the version that answered most rows."""
    versions = collections.Counter(row[0] for row in rows)
    labels = collections.Counter(row[3] for row in rows)
    main_version = versions.most_common(1)[0][0].split(":")[1]
    vocabulary = read_vocabulary(os.path.join(model_dir, main_version))
    titles, descriptions = [row[1] for row in rows], [row[2] for row in rows]
    return Window(
        files=[os.path.basename(path) for path in paths],
        rows=len(rows),
        versions=dict(versions),
        class_mix={name: labels[name] / len(rows) for name in features.LABEL_NAMES},
        mean_length={
            features.TITLE_KEY: float(np.mean([len(t.encode()) for t in titles])),
            features.DESCRIPTION_KEY: float(np.mean([len(d.encode()) for d in descriptions])),
        },
        oov_rate=oov_rate(titles, descriptions, vocabulary) if vocabulary else None,
    )


def training_reference(metadata_address: str, window: Window) -> tuple[str, Window | None]:
    """(what it is, the training data's figures as a Window) for the version that answered most
    of the window: its run's train-split statistics (label mix, mean lengths)."""
    from agnews import skew  # TFDV: only when there is a window to compare

    version = int(max(window.versions, key=lambda v: window.versions[v]).split(":")[1])
    try:
        uri, statistics = skew.training_statistics(metadata_address, version)
    except LookupError as error:
        return f"none ({error})", None
    by_name = {tuple(f.path.step): f for f in statistics.datasets[0].features}
    label_stats = by_name[(features.LABEL_KEY,)].string_stats
    counts = {int(v.value): v.frequency for v in label_stats.top_values}
    total = sum(counts.values()) or 1
    return f"version {version}'s training statistics {uri}", Window(
        files=[],
        rows=int(statistics.datasets[0].num_examples),
        versions={},
        class_mix={name: counts.get(i, 0) / total for i, name in enumerate(features.LABEL_NAMES)},
        mean_length={key: by_name[(key,)].string_stats.avg_length for key in features.TEXT_KEYS},
        oov_rate=None,
    )


def compare(
    window: Window, other: Window, against: str, thresholds: dict[str, float], judged: bool
) -> list[Check]:
    """The window's distances from `other` (training or the previous window)."""

    def check(measure: str, value: float) -> Check:
        key = f"{measure} {against}"
        return Check(key, value, thresholds.get(key) if judged else None)

    checks = [
        check(
            "class_mix infinity_norm",
            max(abs(window.class_mix[n] - other.class_mix.get(n, 0.0)) for n in window.class_mix),
        )
    ]
    for key, length in window.mean_length.items():
        before = other.mean_length.get(key) or 0.0
        if before:
            checks.append(check(f"{key} mean_length_change", abs(length - before) / before))
    if window.oov_rate is not None and other.oov_rate is not None:
        checks.append(check("tokens oov_rate_change", abs(window.oov_rate - other.oov_rate)))
    return checks


def export_span(directory: str, rows: list[tuple[str, str, str, str]]) -> str:
    """The window's requests as an unlabelled span, `directory/span-<N>/requests.csv` (N one past
    the newest span there): headerless title,description rows that `agnews run --score` and a
    labelling step read."""
    import csv
    import io

    spans = [
        int(name.removeprefix("span-").rstrip("/"))
        for name in (tf.io.gfile.listdir(directory) if tf.io.gfile.isdir(directory) else [])
        if name.removeprefix("span-").rstrip("/").isdigit()
    ]
    target = os.path.join(directory, f"span-{max(spans, default=-1) + 1}", EXPORT_FILE_NAME)
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(
        (title, description) for _, title, description, _ in rows
    )
    tf.io.gfile.makedirs(os.path.dirname(target))
    write_atomically(target, buffer.getvalue())
    return target


def run(
    logs_dir: str,
    report_dir: str,
    metadata_address: str,
    model_dir: str,
    webhook: str | None = None,
    export_dir: str | None = None,
    thresholds_file: Path = MONITOR_THRESHOLDS_FILE,
) -> Result | None:
    """One monitor run: None when no log file is new; else the window's checks, written to a
    dated report (and posted to `webhook` when one alerts)."""
    min_rows, thresholds = read_thresholds(thresholds_file)
    state_path = os.path.join(report_dir, STATE_FILE_NAME)
    state = (
        json.loads(tf.io.gfile.GFile(state_path).read())
        if tf.io.gfile.exists(state_path)
        else {"read": [], "previous": None}
    )
    paths = new_log_files(logs_dir, set(state["read"]))
    if not paths:
        return None
    rows = read_requests(paths)
    if not rows:
        raise MonitorError(f"the new log files hold no requests: {', '.join(paths)}")
    window = summarize(paths, rows, model_dir)
    judged = window.rows >= min_rows
    reference, training = training_reference(metadata_address, window)
    checks = compare(window, training, "vs_training", thresholds, judged) if training else []
    if state["previous"]:
        previous = Window(**state["previous"])
        checks += compare(window, previous, "vs_previous", thresholds, judged)
    exported = export_span(export_dir, rows) if export_dir else None
    now = datetime.datetime.now(datetime.timezone.utc)
    report_path = os.path.join(report_dir, f"{REPORT_PREFIX}{now:%Y%m%dT%H%M%S.%fZ}.md")
    result = Result(window, checks, reference, report_path, exported)
    tf.io.gfile.makedirs(report_dir)
    write_atomically(report_path, render(result, min_rows, now))
    write_atomically(
        report_path.removesuffix(".md") + ".json",
        json.dumps(
            {
                "window": dataclasses.asdict(window),
                "reference": reference,
                "checks": [{**dataclasses.asdict(c), "alert": c.alert} for c in checks],
            },
            indent=1,
        ),
    )
    if webhook and result.alerts:
        post_alerts(webhook, result)
    state = {"read": state["read"] + window.files, "previous": dataclasses.asdict(window)}
    write_atomically(state_path, json.dumps(state))
    return result


def render(result: Result, min_rows: int, now: datetime.datetime) -> str:
    window = result.window
    lines = [
        f"# Monitor report {now:%Y-%m-%d %H:%M:%S} UTC",
        "",
        f"Window: {window.rows} logged rows in {len(window.files)} file(s): "
        + ", ".join(window.files),
        "Answered by: " + ", ".join(f"{v} ({n} rows)" for v, n in sorted(window.versions.items())),
        f"Training reference: {result.reference}",
        "",
        *[f"ALERT: {c.measure} = {c.value:.4f} > {c.threshold:g}" for c in result.alerts],
        *(
            []
            if window.rows >= min_rows
            else [f"Not judged: {window.rows} rows, fewer than min_rows = {min_rows}."]
        ),
        "",
        "| measure | value | threshold | alert |",
        "| --- | --- | --- | --- |",
        *[
            f"| {c.measure} | {c.value:.4f} | "
            f"{'-' if c.threshold is None else f'{c.threshold:g}'} | {'yes' if c.alert else ''} |"
            for c in result.checks
        ],
        "",
        "Predicted-class mix: "
        + ", ".join(f"{name} {share:.3f}" for name, share in window.class_mix.items()),
        "Mean length (bytes): "
        + ", ".join(f"{key} {value:.1f}" for key, value in window.mean_length.items()),
        "Tokens outside the model's vocabulary: "
        + ("no vocabulary found" if window.oov_rate is None else f"{window.oov_rate:.4f}"),
    ]
    if result.exported:
        lines.append(f"Exported as an unlabelled span: {result.exported}")
    return "\n".join(lines) + "\n"


def post_alerts(url: str, result: Result) -> None:
    """POSTs {"report", "alerts": [{measure, value, threshold}]} as JSON; a failed post is said
    on stderr (the exit code still alerts)."""
    import sys

    body = json.dumps(
        {
            "report": result.report_path,
            "alerts": [dataclasses.asdict(check) for check in result.alerts],
        }
    ).encode()
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30):
            pass
    except OSError as error:
        print(f"agnews monitor: the webhook {url} failed: {error}", file=sys.stderr)
