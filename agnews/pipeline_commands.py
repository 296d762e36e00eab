"""`agnews run`, `compile` and `report`: the commands that hand over to the `pipeline` package
(imported when the command runs, so `--help` and the serving commands never load TFX)."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import traceback
from typing import Any

from agnews import console
from agnews.exit_codes import ExitCode
from components import features, quiet, settings
from components.artifacts import ACCEPTED, rejected_counts
from pipeline import metadata_connection
from pipeline.config import NEW_VERSION_ALIASES, PipelineConfig, load_config


class RunStopped(RuntimeError):
    """The pipeline stopped on its input or a gate; the message names the run's full log."""


def add_run_parser(subparsers) -> None:
    run = subparsers.add_parser(
        "run",
        argument_default=argparse.SUPPRESS,
        help="Run the whole pipeline locally (LocalDagRunner's loop, independent components "
        "at once).",
    )
    _add_pipeline_options(run)
    run.add_argument(
        "--require-push",
        action="store_true",
        default=False,
        help="Exit with status 2 when the model was not blessed and so not pushed "
        "(the --push-baseline baseline never changes the exit code).",
    )
    run.add_argument(
        "--verbose",
        action="store_true",
        default=False,
        help="Print every library log line too (they always go to the run's log "
        "file, logs/ beside the ML Metadata file).",
    )
    run.add_argument(
        "--workers",
        type=console.at_least_one,
        default=settings.DEFAULT_WORKERS,
        metavar="N",
        help="Run up to N components at once, each in a process of its own, as soon as their "
        "inputs are ready; 1: one after the other in this process, as TFX's LocalDagRunner "
        f"does (default: {settings.DEFAULT_WORKERS}, one more than the cores this process may "
        "use).",
    )
    run.add_argument(
        "--keep",
        type=console.at_least_one,
        default=None,
        metavar="N",
        help="After pushing, delete all but the newest N versions in --serving-dir "
        "(and in the baseline's, with --push-baseline; default: keep every version).",
    )
    run.add_argument(
        "--push-baseline",
        action="store_true",
        help=f"Also push the {settings.BASELINE_MODEL} baseline, through the same gates "
        f"as the model and against its own last push, to "
        f"{settings.BASELINE_SERVING_MODEL_NAME}/ beside --serving-dir: one model "
        f"server then serves both (agnews serve --model-config-file).",
    )


def run(args) -> int:
    """Runs the pipeline with LocalDagRunner under the run lock, then prints what became of it."""
    try:
        config = _config_from_args(args)
    except ValueError as error:
        return console.fail("run", error)
    if getattr(args, "print_config", False):
        print(config.to_json())
        return ExitCode.OK
    metadata_connection.check(config.metadata_address)  # before anything is written
    from components import trainer
    from pipeline import beam_packaging, run_lock

    if down := beam_packaging.unreachable_portable_services(config.beam_args):
        return console.fail("run", f"{' and '.join(down)} refused the connection")

    if trainer.cluster_size() > 1:
        print(
            f"agnews run refused: TF_CONFIG names {trainer.cluster_size()} training processes, but "
            "agnews run trains in this one (LocalDagRunner). Multi-worker training runs the "
            "Trainer once per worker on a cluster (see docs/orchestrators.md); unset TF_CONFIG "
            "to train here.",
            file=sys.stderr,
        )
        return ExitCode.STOPPED
    quiet.drop_tfx_notices()
    try:
        with run_lock.exclusive(
            config.metadata_address, config.pipeline_root, config.pipeline_name
        ):
            summary, log = _run_pipeline(config, args.verbose, args.workers)
    except run_lock.RunInProgress as error:
        print(f"agnews run refused: {error}", file=sys.stderr)
        return ExitCode.REFUSED
    except RunStopped as error:
        return console.fail("run", error)
    _print_summary(summary, config, log.path)
    from pipeline import run_log

    print(run_log.profile_line(log, config.metadata_address, config.pipeline_name))
    if not summary.trained:
        return ExitCode.OK
    protected = _register(config, summary.pushed_to) if summary.pushed else set()
    if args.keep is not None:
        _prune(summary, config, args.keep, protected)
    return ExitCode.OK if summary.pushed or not args.require_push else ExitCode.NOT_PUSHED


def _run_pipeline(config: PipelineConfig, verbose: bool, workers: int):
    """(the run's summary, its RunLog); RunStopped when the input or a gate stopped it."""
    from components import drift, rows, validation
    from pipeline import beam_packaging, local_runner, run_log

    stops = (
        rows.IngestError,
        validation.DataContractError,
        drift.DriftError,
        FileNotFoundError,
        beam_packaging.WheelBuildError,
    )
    log = None
    try:
        with run_log.quiet_run(
            config.run_dir, config.metadata_address, config.pipeline_name, verbose
        ) as log:
            return local_runner.run(config, workers), log
    except stops as error:
        raise RunStopped(f"{error}\nFull log: {log and log.path}") from error
    except Exception as error:
        lost = _lost_services(config)
        if not lost:
            raise
        if log is not None:  # the whole error for the run's log, one line for the user
            with open(log.path, "a") as out:
                traceback.print_exception(error, file=out)
        raise RunStopped(
            f"the run stopped: {'; '.join(lost)}. Components that finished are recorded: run the "
            "same command again once it answers (they are cached, and nothing the stopped one "
            f"half-wrote is used).\nFull log: {log and log.path}"
        ) from None


def _lost_services(config: PipelineConfig) -> list[str]:
    """What the run relies on that cannot be reached now (it could at the start: `run` checks
    them first): the ML Metadata server, a portable Beam run's job service and worker pool.
    Whether a failure mid-run was theirs is judged by reaching them, not by the error TFX,
    ml-metadata or Beam raised (Beam's says "Error running pipeline", TFX's names no server)."""
    from pipeline import beam_packaging

    lost = []
    try:
        metadata_connection.check(config.metadata_address)
    except metadata_connection.MetadataStoreError as error:
        lost.append(str(error))
    return lost + [
        f"{service} is unreachable"
        for service in beam_packaging.unreachable_portable_services(config.beam_args)
    ]


def _print_summary(summary, config: PipelineConfig, log_path: str) -> None:
    """The rows, the drift check, then either 'nothing new' or the report's headline and what
    became of the model (and the baseline) at the gates."""
    rows = summary.rows.get(ACCEPTED, 0) + sum(rejected_counts(summary.rows).values())
    print(
        f"Span {summary.span} input rows: {rows}, accepted {summary.rows.get(ACCEPTED, 0)}, "
        + console.rejected_rows(summary.rows, summary.rejected_rows_file)
    )
    if not summary.drift_checked:
        print(
            f"Drift: not checked, span {summary.span} is the first span (no earlier span to "
            "compare with)."
        )
    if not summary.trained:
        print(
            f"Nothing new to train on: the served model was trained on this window of spans, "
            f"so no new version was pushed (--no-cache retrains anyway). Full log: {log_path}"
        )
        return
    print(f"Trained on spans {', '.join(map(str, summary.window))}.")
    _print_report(config.run_dir, config)
    print(f"Full log: {log_path}")
    if summary.scores_note:
        print(summary.scores_note)
    print(_push_outcome("Model", summary, config))
    if summary.baseline:
        print(_push_outcome("Baseline", summary.baseline, config))


def _register(config: PipelineConfig, pushed_to: str) -> set[int]:
    """Registers the version this run pushed to `pushed_to` (agnews.registry), says which alias
    it got and writes its model card; returns the versions holding an alias, which --keep never
    deletes."""
    from agnews import model_card, registry

    book = registry.model_registry(
        config.metadata_address, config.pipeline_name, config.serving_dir
    )
    book.sync(config.new_version_alias)
    aliases = book.aliases()
    print(
        "Registry: "
        + ", ".join(f"{alias} is version {version}" for alias, version in sorted(aliases.items()))
        + (
            f" (`agnews models promote {aliases[registry.CANARY]} --to stable --reason ...` "
            "makes it stable)"
            if registry.CANARY in aliases
            else ""
        )
    )
    version = int(os.path.basename(pushed_to.rstrip("/")))
    card = model_card.write_card(
        config.metadata_address, config.run_dir, config.pipeline_name, config.serving_dir, version
    )
    print(f"Model card: {card}")
    return set(aliases.values())


def _prune(summary, config: PipelineConfig, keep: int, protected: set[int]) -> None:
    """--keep: all but the newest `keep` versions of each model this run pushed are deleted,
    except those holding a registry alias."""
    from agnews.versions import prune_versions

    pushes: list[tuple[Any, str, set[int]]] = [
        (summary, config.serving_dir, protected),
        (summary.baseline, config.baseline_serving_dir, set()),
    ]
    for push, serving_dir, kept in pushes:
        if push and push.pushed:
            for removed in prune_versions(serving_dir, keep, kept):
                print(f"Removed old version: {removed}")


def add_compile_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "compile",
        argument_default=argparse.SUPPRESS,
        help="Compile the pipeline for an orchestrator (kubeflow: KFP v2 IR for Kubeflow/Vertex).",
    )
    parser.add_argument("orchestrator", choices=["kubeflow"])
    parser.add_argument(
        "--output", default="pipeline.json", help="IR file to write (default: %(default)s)."
    )
    parser.add_argument(
        "--image",
        default=settings.DEFAULT_KUBEFLOW_IMAGE,
        help="Pipeline image built from the Dockerfile (default: %(default)s).",
    )
    parser.add_argument(
        "--test-split",
        action="store_true",
        help="The data directory has test*.csv[.gz] files (it is not listed at compile time).",
    )
    parser.add_argument(
        "--spans",
        action="store_true",
        help="The data directory holds span-<N>/ directories: each run ingests the "
        "newest (or --span N).",
    )
    parser.add_argument(
        "--trainer-accelerator",
        metavar="TYPE[:COUNT]",
        help="Run the Trainers on a node with COUNT (default 1) GPUs of TYPE, as "
        "KFP / Vertex AI name them, e.g. NVIDIA_TESLA_T4:1.",
    )
    _add_pipeline_options(parser)


def compile_pipeline(args) -> int:
    """Writes the KFP v2 IR of the pipeline for Kubeflow Pipelines or Vertex AI Pipelines."""
    from pipeline import kubeflow_runner

    try:
        config = dataclasses.replace(
            _config_from_args(args),
            test_split=bool(getattr(args, "test_split", False)),
            spans=bool(getattr(args, "spans", False)),
        )
    except ValueError as error:
        return console.fail("compile", error)
    if getattr(args, "print_config", False):
        print(kubeflow_runner.for_image(config, args.image).to_json())
        return ExitCode.OK
    try:
        path = kubeflow_runner.compile_pipeline(
            config, args.output, args.image, getattr(args, "trainer_accelerator", None)
        )
    except ValueError as error:
        return console.fail("compile", error)
    print(
        f"KFP v2 pipeline written to {path}: "
        "upload it to Kubeflow Pipelines or Vertex AI Pipelines."
    )
    return ExitCode.OK


def add_report_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "report", help="Rewrite report.md and its plots for a run directory."
    )
    parser.add_argument(
        "run_dir",
        nargs="?",
        default=os.path.dirname(PipelineConfig().metadata_path),
        metavar="RUN",
        help="Directory holding metadata.sqlite, and the report (default: %(default)s).",
    )
    console.add_metadata_server_arguments(parser)


def report(args) -> int:
    """Rewrites report.md and its plots from ML Metadata."""
    try:
        _print_report(
            args.run_dir,
            PipelineConfig(
                metadata_path=os.path.join(args.run_dir, "metadata.sqlite"),
                metadata_uri=args.metadata_uri,
            ),
        )
    except (FileNotFoundError, ValueError) as error:
        return console.fail("report", error)
    return ExitCode.OK


def _add_pipeline_options(parser: argparse.ArgumentParser) -> None:
    """Flags that override the config (defaults, then --config FILE, then flags). Long on
    purpose: one add_argument per flag, read top to bottom."""
    d = PipelineConfig()
    option = parser.add_argument
    option(
        "--config",
        dest="config_file",
        metavar="FILE",
        help="JSON file of PipelineConfig fields (see --print-config) applied before the flags; "
        "relative paths in it are taken from its directory.",
    )
    option(
        "--print-config", action="store_true", help="Print the effective configuration and exit."
    )
    option(
        "--data",
        help="Directory of canonical AG News CSV: train.csv or train.csv.gz, optional "
        "test.csv[.gz]; a directory of spans of those, span-<N>/train.csv[.gz] "
        "(each run ingests the newest); or tfds:ag_news_subset[:DATA_DIR] "
        "(default: the embedded 3,000-row sample).",
    )
    option(
        "--span",
        type=console.non_negative,
        metavar="N",
        help="Ingest span-<N> instead of the newest span (a backfill); the window ends at N.",
    )
    option(
        "--window",
        type=console.at_least_one,
        metavar="K",
        help=f"Train on the K newest ingested spans, as ML Metadata records them "
        f"(default: {d.window}).",
    )
    option(
        "--accept-drift",
        action="store_true",
        help="Train on a span even though its statistics drifted from the previous span's "
        "(a deliberate decision, logged); without it a drifted span stops the run.",
    )
    option(
        "--cold-start",
        action="store_false",
        dest="warm_start",
        help="Train from random weights instead of from the last pushed model.",
    )
    option("--pipeline-root", help=f"TFX artifacts (default: {d.pipeline_root}).")
    option("--metadata-path", help=f"MLMD sqlite file (default: {d.metadata_path}).")
    console.add_metadata_server_arguments(parser)
    option("--serving-dir", help=f"Pusher's TF Serving base directory (default: {d.serving_dir}).")
    option(
        "--new-version-alias",
        choices=NEW_VERSION_ALIASES,
        help="Registry alias of a pushed version: canary (a share of traffic with `agnews serve "
        "--from-registry --canary-percent`, until `agnews models promote`) or stable "
        f"(default: {d.new_version_alias}; the first version is always stable).",
    )
    option(
        "--model",
        choices=settings.MODEL_NAMES,
        help=f"bilstm2: the masked two-layer BiLSTM; lstm: LSTM(8); simple_rnn: SimpleRNN(16); "
        f"linear: TF-IDF word 1-2-grams, the baseline; bilstm2_wide: the BiLSTM plus that "
        f"linear part, one softmax (default: {d.model}).",
    )
    option(
        "--text", choices=features.TEXT_CHOICES, help=f"Text the model reads (default: {d.text})."
    )
    option(
        "--mixed-precision", action="store_true", help="float16 compute on GPUs (float32 softmax)."
    )
    option(
        "--epochs",
        type=int,
        help=f"Most epochs; training stops earlier when eval loss stops "
        f"improving for --patience epochs (default: {d.epochs}).",
    )
    option("--patience", type=int, help=f"(default: {d.patience})")
    option("--batch-size", type=int, help=f"(default: {d.batch_size})")
    option("--learning-rate", type=float, help=f"(default: {d.learning_rate})")
    option(
        "--embedding-dropout",
        type=float,
        help="Share of embedding channels dropped while training "
        f"(default: {d.embedding_dropout}).",
    )
    option("--max-tokens", type=int, help=f"Tokens kept per example (default: {d.max_tokens}).")
    option(
        "--min-accuracy",
        type=float,
        help=f"Eval accuracy a model needs to be blessed and pushed (default: {d.min_accuracy}).",
    )
    option(
        "--max-accuracy-drop",
        type=float,
        help=f"How far below the last pushed model's accuracy a candidate may fall "
        f"(default: {d.max_accuracy_drop}).",
    )
    option(
        "--max-bad-fraction",
        type=float,
        help="Fail the run when more input rows than this are rejected "
        f"(default: {d.max_bad_fraction}).",
    )
    option(
        "--beam-arg",
        action="append",
        dest="beam_args",
        help="A Beam pipeline option for every Beam-powered component, e.g. "
        "--beam-arg=--direct_num_workers=2 (repeatable).",
    )
    console.add_portable_beam_arguments(parser)
    option(
        "--no-baseline",
        action="store_false",
        dest="baseline",
        help=f"Skip the {settings.BASELINE_MODEL} baseline otherwise trained beside the model "
        "and reported next to it on the holdout split.",
    )
    option(
        "--no-cache",
        action="store_false",
        dest="enable_cache",
        help="Re-run every component even when its inputs did not change.",
    )
    option(
        "--score",
        metavar="DIR",
        help="Also score every file in DIR (rows as `agnews score` reads them) with the "
        "trained model, when it is blessed (TFX BulkInferrer); the scores go to "
        "report/scores.csv next to the report.",
    )


def _config_from_args(args) -> PipelineConfig:
    """Defaults, then --config FILE, then the flags; --beam-workers adds its Beam options to
    the config's (or --beam-arg's)."""
    names = {f.name for f in dataclasses.fields(PipelineConfig)}
    config = load_config(
        getattr(args, "config_file", None), **{k: v for k, v in vars(args).items() if k in names}
    )
    portable = console.portable_beam_args(args)
    return (
        dataclasses.replace(config, beam_args=[*config.beam_args, *portable])
        if portable
        else config
    )


def _push_outcome(subject: str, push, config: PipelineConfig) -> str:
    """The line saying where `push` (a local_runner.PushSummary) pushed `subject`, or why not."""
    if push.pushed:
        from pipeline import report

        return (
            f"{subject} pushed to: {push.pushed_to} (blessed on its eval accuracy over the "
            f"whole eval split, {report.overall_accuracy(config.run_dir, push.evaluation):.4f}: at "
            f"least {config.min_accuracy:g}, and at most {config.max_accuracy_drop:g} below the "
            f"last pushed {subject.lower()}'s when there is one)"
        )
    if push.not_servable_reason:
        return (
            f"{subject} NOT pushed: it failed the servability check (loaded with TensorFlow alone "
            f"and sent the warmup requests): {push.not_servable_reason}. "
            f"The served version is unchanged."
        )
    failures = "; ".join(push.gate_failures) or "TFMA recorded no failed bar"
    return (
        f"{subject} NOT pushed: it was not blessed ({failures}; the bars "
        f"hold for the whole eval split, slices are reported only; TFMA's report: "
        f"{push.evaluation_uri}). The served version is unchanged."
        + (
            " `agnews models bless --reason TEXT` pushes it anyway (recorded as an override)."
            if subject == "Model"
            else ""
        )
    )


def _print_report(run_dir: str, config: PipelineConfig) -> None:
    from pipeline import report

    report_path, headline = report.write_report(
        run_dir, config.pipeline_name, config.metadata_address
    )
    print(headline)
    print(f"Report: {report_path}")
