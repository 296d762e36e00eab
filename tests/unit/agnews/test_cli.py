"""Command-line behaviour that needs no pipeline run."""

import json
import socket

import pytest

from agnews import cli, versions
from agnews.exit_codes import ExitCode
from tests.helpers.cli import agnews_subprocess
from tests.helpers.data import sample_lines


def _fake_versions(base, names):
    for name in names:
        (base / name).mkdir(parents=True)
        (base / name / "saved_model.pb").write_bytes(b"")


def test_keep_prunes_only_the_oldest_versions(tmp_path):
    _fake_versions(tmp_path, ["100", "300", "20", "200"])
    (tmp_path / "notes").mkdir()  # not a version: never touched
    removed = versions.prune_versions(str(tmp_path), keep=2)
    assert sorted(removed) == sorted([f"{tmp_path}/20", f"{tmp_path}/100"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["200", "300", "notes"]
    assert versions.prune_versions(str(tmp_path), keep=5) == []


def test_keep_below_one_is_refused(tmp_path):
    _fake_versions(tmp_path, ["1"])
    with pytest.raises(ValueError, match="at least 1"):
        versions.prune_versions(str(tmp_path), keep=0)
    assert (tmp_path / "1").is_dir()


def test_predict_without_a_model_is_a_clear_error(tmp_path, capsys):
    assert (
        cli.main(["predict", "--model", str(tmp_path / "nothing"), "Oil prices rise"])
        == ExitCode.STOPPED
    )
    assert "run `agnews run` first" in capsys.readouterr().err


def test_keep_zero_is_refused_before_anything_runs(capsys):
    with pytest.raises(SystemExit):
        cli.main(["run", "--keep", "0"])
    assert "--keep: must be a whole number of at least 1" in capsys.readouterr().err


@pytest.mark.parametrize(
    "command", [[], ["run"], ["predict"], ["serve"], ["report"], ["compile"], ["skew"], ["score"]]
)
def test_help_imports_no_tensorflow_tfx_or_beam(command):
    code, loaded, out, _ = agnews_subprocess(*command, "--help")
    assert code == ExitCode.OK
    assert out.startswith("usage: agnews")
    assert loaded == set()


def test_print_config_needs_no_tensorflow():
    code, loaded, out, _ = agnews_subprocess("run", "--model", "lstm", "--print-config")
    assert code == ExitCode.OK and '"model": "lstm"' in out
    assert loaded == set()


def test_help_shows_choices_and_defaults_from_the_settings():
    from components import features, settings

    _, _, out, _ = agnews_subprocess("run", "--help")
    assert "{" + ",".join(settings.MODEL_NAMES) + "}" in out
    assert "{" + ",".join(features.TEXT_CHOICES) + "}" in out
    assert f"(default: {settings.DEFAULT_EMBEDDING_DROPOUT})" in out


def test_known_tensorflow_noise_is_dropped_and_real_errors_are_kept():
    import subprocess
    import sys

    script = (
        "import os\n"
        "from components import quiet\n"
        "with quiet.filtered_stderr():\n"
        "    os.write(2, b'E cuda_fft.cc:479] Unable to register cuFFT factory: "
        "Attempting...\\n')\n"
        "    os.write(2, b'E some_op.cc:1] Invalid argument: a real error\\n')\n"
        "    os.write(2, b'E util.cc:131] oneDNN supports DT_INT64 only on platforms with "
        "AVX-512.\\n')\n"
        "print('done')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.stdout == "done\n"
    assert done.stderr == "E some_op.cc:1] Invalid argument: a real error\n"


@pytest.mark.parametrize("flags", [["--no-baseline"], ["--model", "linear"]])
def test_push_baseline_without_a_baseline_is_a_one_line_error(tmp_path, flags):
    code, _, out, err = agnews_subprocess(
        "run",
        "--push-baseline",
        *flags,
        "--pipeline-root",
        str(tmp_path / "pipeline"),
        "--metadata-path",
        str(tmp_path / "metadata.sqlite"),
        "--serving-dir",
        str(tmp_path / "serving"),
    )
    assert code == ExitCode.STOPPED and out == ""
    assert err.startswith(
        "agnews run failed: push_baseline (--push-baseline) needs the linear baseline"
    )
    assert len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []  # refused before anything ran


def test_compile_refuses_a_bad_config_file_in_one_line(tmp_path):
    config = tmp_path / "config.json"
    config.write_text('{"push_baseline": true, "baseline": false}')
    code, _, out, err = agnews_subprocess(
        "compile", "kubeflow", "--config", str(config), "--output", str(tmp_path / "pipeline.json")
    )
    assert code == ExitCode.STOPPED and out == ""
    assert err.startswith(
        "agnews compile failed: push_baseline (--push-baseline) needs the linear baseline"
    )
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "pipeline.json").exists()


@pytest.mark.parametrize("serving_dir", ["gs://bucket", "gs://bucket/", "/srv/agnews_linear"])
def test_push_baseline_needs_a_directory_of_its_own_beside_the_models(serving_dir):
    from pipeline.config import PipelineConfig

    with pytest.raises(ValueError, match="does not leave room"):
        PipelineConfig(serving_dir=serving_dir, push_baseline=True)
    assert (
        PipelineConfig(
            serving_dir="gs://bucket/serving/agnews", push_baseline=True
        ).baseline_serving_dir
        == "gs://bucket/serving/agnews_linear"
    )


def test_run_on_a_directory_of_misnamed_files_names_them_before_anything_runs(tmp_path):
    """The console, not only the log, says which file was passed over and what is read."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train_subset.csv.gz").write_bytes(sample_gzip())
    code, _, out, err = agnews_subprocess(
        "run",
        "--data",
        str(tmp_path / "data"),
        "--pipeline-root",
        str(tmp_path / "root"),
        "--metadata-path",
        str(tmp_path / "run" / "metadata.sqlite"),
    )
    assert code == ExitCode.STOPPED, err
    assert err.startswith(
        "agnews run failed: No train.csv or train.csv.gz (or shards such as "
        "train-00000-of-00002.csv.gz) in "
    )
    assert "found train_subset.csv.gz, which is not read. Rename the file" in err
    assert not (tmp_path / "root" / "FileBasedExampleGen").exists()  # stopped before ExampleGen


def sample_gzip() -> bytes:
    import gzip

    return gzip.compress(b"\n".join(sample_lines(5)) + b"\n")


def test_every_server_option_comes_from_a_serve_flag():
    """`agnews serve` builds ServeOptions from its flags' dests: a field with no flag would
    break the command."""
    from agnews.serving.server import ServeOptions

    options = cli.serve_options(cli.build_parser().parse_args(["serve"]))
    assert options == ServeOptions(model_base_path=options.model_base_path)  # the defaults
    no_grpc = cli.serve_options(cli.build_parser().parse_args(["serve", "--no-grpc"]))
    assert no_grpc.grpc_port is None


def test_no_grpc_and_a_grpc_port_are_refused_together(capsys):
    with pytest.raises(SystemExit) as stopped:
        cli.build_parser().parse_args(["serve", "--no-grpc", "--grpc-port", "9000"])
    assert stopped.value.code == 2  # argparse's usage error
    assert "not allowed with argument" in capsys.readouterr().err


def test_ctrl_c_inside_a_beam_stage_is_an_interruption_not_a_traceback(monkeypatch, capsys):
    """Beam re-raises a KeyboardInterrupt that hits a DoFn as a RuntimeError (CI saw `agnews run`
    exit 1 with a traceback when Ctrl-C landed in Transform's analysis)."""
    import apache_beam as beam

    def interrupted(_):
        raise KeyboardInterrupt

    def predict_in_beam(_args):
        with beam.Pipeline() as pipeline:
            _ = pipeline | beam.Create([1]) | beam.Map(interrupted)
        return ExitCode.OK

    monkeypatch.setattr(cli, "_predict", predict_in_beam)
    assert cli.main(["predict", "x"]) == ExitCode.INTERRUPTED
    assert capsys.readouterr().err.strip().splitlines()[-1] == "agnews predict: interrupted."


def test_other_errors_still_raise(monkeypatch):
    def broken(_args):
        raise RuntimeError("not an interruption")

    monkeypatch.setattr(cli, "_predict", broken)
    with pytest.raises(RuntimeError, match="not an interruption"):
        cli.main(["predict", "x"])


def test_beam_workers_stand_for_the_portable_runners_beam_args(tmp_path):
    config_file = tmp_path / "config.json"
    config_file.write_text('{"beam_args": ["--max_num_workers=4"]}')
    code, loaded, out, _ = agnews_subprocess(
        *("run", "--config", str(config_file), "--print-config"),
        *("--beam-workers", "workers.example:50000", "--beam-job-service", "jobs.example:8099"),
    )
    assert code == ExitCode.OK and "tensorflow" not in loaded
    assert json.loads(out)["beam_args"] == [
        "--max_num_workers=4",
        "--runner=PortableRunner",
        "--job_endpoint=jobs.example:8099",
        "--environment_type=EXTERNAL",
        "--environment_config=workers.example:50000",
    ]


@pytest.mark.parametrize("command", ["run", "score"])
def test_a_job_service_without_workers_is_one_line(command, tmp_path):
    inputs = [] if command == "run" else [str(tmp_path), "--output", str(tmp_path / "out")]
    code, _, _, err = agnews_subprocess(command, *inputs, "--beam-job-service", "jobs.example:1")
    assert code == ExitCode.STOPPED
    assert err.strip() == (
        f"agnews {command} failed: --beam-job-service needs --beam-workers HOST:PORT, the "
        "`agnews beam-worker` pool whose workers run the job."
    )


def test_a_run_whose_beam_workers_refuse_connections_stops_before_anything_is_written(tmp_path):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, not listening: a connection is refused
        workers = f"127.0.0.1:{closed.getsockname()[1]}"
        code, _, _, err = agnews_subprocess(
            *("run", "--pipeline-root", str(tmp_path / "pipeline")),
            *("--metadata-path", str(tmp_path / "metadata.sqlite"), "--beam-workers", workers),
        )
    assert code == ExitCode.STOPPED
    assert err.strip() == (
        f"agnews run failed: the Beam worker pool at {workers} refused the connection"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == []
