"""`agnews monitor` on request logs replayed as the server writes them (its RequestLog, labels
as a right model would answer), against the first run's real training statistics and served
vocabulary: windows of the same news pass; a class-mix shift and a vocabulary shift alert, only
in the window that shifted, with the report line, the exit code and the webhook."""

import csv
import http.server
import json
import threading

import pytest

from agnews import cli, monitor
from agnews.exit_codes import ExitCode
from tests.helpers.serving import newest, replay_requests, unseen_rows

WINDOW = 250  # rows per window: above schemas/monitor.ini's min_rows


class _Webhook(http.server.BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802  (http.server's name)
        _Webhook.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    server = http.server.HTTPServer(("127.0.0.1", 0), _Webhook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Webhook.received = []
    yield f"http://127.0.0.1:{server.server_port}/alerts", _Webhook.received
    server.shutdown()


def _monitor(first_run, logs_dir, *extra: str) -> int:
    root, _ = first_run
    return cli.main(
        [
            *("monitor", "--logs", str(logs_dir)),
            *("--metadata-path", str(root / "metadata.sqlite")),
            *("--model", str(root / "serving"), *extra),
        ]
    )


def _shifted_class_mix(rows):
    return [row for row in rows if row[2] == "Sports"][:WINDOW]


def _shifted_vocabulary(rows):
    """Every word spelled backwards: the same lengths and classes, other tokens."""
    return [
        (" ".join(w[::-1] for w in title.split()), " ".join(w[::-1] for w in text.split()), label)
        for title, text, label in rows
    ]


@pytest.mark.parametrize(
    "shift, alerted",
    [
        (
            _shifted_class_mix,
            {"class_mix infinity_norm vs_training", "class_mix infinity_norm vs_previous"},
        ),
        (_shifted_vocabulary, {"tokens oov_rate_change vs_previous"}),
    ],
)
def test_only_the_shifted_window_alerts(first_run, tmp_path, capsys, webhook, shift, alerted):
    root, _ = first_run
    version = int(newest(root / "serving"))
    rows, (url, received) = unseen_rows(300), webhook
    logs = tmp_path / "logs"
    normal = [rows[i * WINDOW : (i + 1) * WINDOW] for i in range(2)]
    for window in normal:
        replay_requests(logs, version, window)
        assert _monitor(first_run, logs, "--webhook", url) == ExitCode.OK, capsys.readouterr()
    assert _monitor(first_run, logs) == ExitCode.OK  # nothing new: nothing read twice
    assert "No new request logs" in capsys.readouterr().out

    replay_requests(logs, version, shift(rows[2 * WINDOW :])[:WINDOW])
    export = tmp_path / "export"
    code = _monitor(first_run, logs, "--webhook", url, "--export-span", str(export))
    out = capsys.readouterr().out
    assert code == ExitCode.ALERT
    assert {
        line.split(" = ")[0].removeprefix("ALERT: ")
        for line in out.splitlines()
        if line.startswith("ALERT: ")
    } == alerted
    (report,) = sorted((logs / "monitor").glob("monitor-*.json"))[-1:]
    checks = json.loads(report.read_text())["checks"]
    assert {c["measure"] for c in checks if c["alert"]} == alerted
    assert [{a["measure"] for a in post["alerts"]} for post in received] == [alerted]
    exported = export / "span-0" / monitor.EXPORT_FILE_NAME
    assert f"Exported span: {exported}" in out
    assert len(list(csv.reader(exported.open()))) == WINDOW


def test_a_window_below_min_rows_is_reported_not_judged(first_run, tmp_path, capsys):
    root, _ = first_run
    logs = tmp_path / "logs"
    replay_requests(logs, int(newest(root / "serving")), _shifted_class_mix(unseen_rows(300))[:50])
    assert _monitor(first_run, logs) == ExitCode.OK
    (report,) = (logs / "monitor").glob("monitor-*.md")
    assert "Not judged: 50 rows, fewer than min_rows = 200." in report.read_text()
