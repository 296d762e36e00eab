"""`agnews`: run the pipeline, query, serve and score with a pushed model, compare served
requests with the training data.

Each command imports only what it needs, when it runs: help and --print-config need no
TensorFlow; predict, serve and report need TensorFlow but not TFX, TFT, TFMA or Beam (report
reads TFMA's and TFDV's results once, then from its cache); skew needs TFDV. `run`, `compile`
and `report` are in `agnews.pipeline_commands`; exit codes in `agnews.exit_codes`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import warnings
from pathlib import Path

# TensorFlow's C++ info and warning lines (dozens per model load in TFMA) and Google client
# libraries' Python-version notices drown the useful output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
warnings.filterwarnings("ignore", category=FutureWarning)

import components  # noqa: F401, E402  (Keras 2 before TensorFlow)
from agnews import console, models_command, pipeline_commands  # noqa: E402
from agnews.exit_codes import ExitCode  # noqa: E402
from components import quiet, settings  # noqa: E402
from components.artifacts import ACCEPTED, rejected_counts  # noqa: E402
from pipeline import metadata_connection, run_lock  # noqa: E402
from pipeline.config import MONITOR_THRESHOLDS_FILE, PipelineConfig  # noqa: E402


def _add_predict_parser(subparsers) -> None:
    parser = subparsers.add_parser("predict", help="Classify headlines with a pushed SavedModel.")
    parser.add_argument(
        "--model",
        default=PipelineConfig().serving_dir,
        help="A model version directory, or a base directory whose newest "
        "numeric version is used (default: %(default)s).",
    )
    parser.add_argument(
        "--description",
        default="",
        help="Description text paired with every headline (default: empty).",
    )
    parser.add_argument("text", nargs="+", help="Headline text, one argument per example.")


def _predict(args) -> int:
    from agnews import predict, versions

    try:
        version_dir = versions.resolve_version_dir(args.model)
    except FileNotFoundError as error:
        return console.fail("predict", error)
    print(f"Model: {version_dir}", flush=True)
    with quiet.filtered_stderr():
        rows = predict.predict(version_dir, args.text, [args.description] * len(args.text))
    for row in rows:
        probabilities = "  ".join(f"{name}={p:.3f}" for name, p in row["probabilities"].items())
        print(f"{row['label']:<9} {probabilities}  | {row['title']}")
    return ExitCode.OK


def _add_score_parser(subparsers) -> None:
    """`agnews score`'s flags. Long on purpose: one add_argument per flag, read top to bottom."""
    from pipeline.scores import JOB_SUMMARY_FILE_NAME, PREDICTION_LOGS_PREFIX, SCORES_PREFIX

    parser = subparsers.add_parser(
        "score",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="Score files of rows with a pushed model (a Beam pipeline; local or Dataflow/Flink).",
        description=f"""\
Scores every row of INPUT files with a pushed SavedModel, in a Beam pipeline (tfx_bsl's
RunInference, as TFX's BulkInferrer: the model is loaded once per worker process).

Inputs: AG News-style CSV or CSV.gz, headerless, labelled (class,title,description) or not
(title,description): each file's form is told from its first line that reads as 2 or 3 CSV
fields, so one damaged line does not change it; a first line of column names (...,title,
description) is skipped. A file whose name contains "tfrecord" holds tf.Examples with title
and description (GZIP when named *.gz). An INPUT may be a file, a glob pattern or a directory.

Writes to OUT: {SCORES_PREFIX}-SSSSS-of-NNNNN.csv (source_file relative to the inputs' common
directory, line_number from 1 (a record's number in a TFRecord file), label, p_<class> for each
class, model_version; rows in no particular order), rejected.csv (rows that cannot be
read, with file, line, reason and raw line, by ingestion's rules), with --prediction-logs
{PREDICTION_LOGS_PREFIX}-*.gz (TFRecords of TF Serving PredictionLogs), and {JOB_SUMMARY_FILE_NAME},
written last: a directory without it holds no finished job. Shards are written aside by Beam
and renamed into place when complete.""",
    )
    parser.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="Files, glob patterns or directories."
    )
    parser.add_argument(
        "--model",
        default=PipelineConfig().serving_dir,
        help="A model version directory, or a base directory whose newest "
        "numeric version is used (default: %(default)s).",
    )
    parser.add_argument("--output", required=True, metavar="OUT", help="Directory for the scores.")
    parser.add_argument(
        "--prediction-logs",
        action="store_true",
        help="Also write the PredictionLogs (request example and response) as TFRecords.",
    )
    parser.add_argument(
        "--max-bad-fraction",
        type=float,
        default=settings.DEFAULT_MAX_BAD_FRACTION,
        help="Stop, keeping no scores, when more rows than this are rejected "
        "(default: %(default)s).",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="Replace the outputs of an earlier job in OUT (without it, a non-empty "
        "OUT is refused; so is one holding other files).",
    )
    parser.add_argument(
        "--beam-arg",
        action="append",
        dest="beam_args",
        default=[],
        help="A Beam pipeline option, e.g. --beam-arg=--direct_running_mode=multi_processing "
        "--beam-arg=--direct_num_workers=2, or --beam-arg=--runner=DataflowRunner ... "
        "(repeatable).",
    )
    console.add_portable_beam_arguments(parser)


def _score(args) -> int:
    from agnews import score
    from components import rows
    from pipeline import beam_packaging, scores

    try:
        beam_args = [*args.beam_args, *console.portable_beam_args(args)]
    except ValueError as error:
        return console.fail("score", error)
    quiet.drop_tfx_notices()
    try:
        summary = score.score(
            args.inputs,
            args.model,
            args.output,
            beam_args,
            args.prediction_logs,
            args.max_bad_fraction,
            overwrite=args.overwrite,
        )
    except (score.ScoreError, rows.IngestError, beam_packaging.WheelBuildError) as error:
        return console.fail("score", error)
    print(
        f"Model: {summary.model_dir} (version {summary.model_version}, loaded "
        f"{summary.model_loads} time{'s' if summary.model_loads != 1 else ''})"
    )
    total = summary.rows.get(ACCEPTED, 0) + sum(rejected_counts(summary.rows).values())
    print(
        f"Input rows: {total} in {len(summary.inputs)} "
        f"file{'s' if len(summary.inputs) != 1 else ''}, "
        f"scored {summary.scored}, "
        + console.rejected_rows(summary.rows, summary.rejected_rows_file)
    )
    print(
        f"Scores: {os.path.join(args.output, scores.SCORES_PREFIX)}-*.csv "
        f"({len(summary.scores)} shard{'s' if len(summary.scores) != 1 else ''})"
        + (
            f"; prediction logs: {os.path.join(args.output, scores.PREDICTION_LOGS_PREFIX)}-*.gz"
            if summary.prediction_logs
            else ""
        )
    )
    return ExitCode.OK


def _add_serve_parser(subparsers) -> None:
    """`agnews serve`'s flags. Long on purpose: one add_argument per flag, read top to bottom."""
    parser = subparsers.add_parser(
        "serve",
        help="Serve pushed models over TF Serving's REST and gRPC APIs.",
        description="TF Serving's REST and gRPC APIs for pushed models: newest version of --model, "
        "or the models of a --model-config-file. SIGTERM or Ctrl-C stops it after "
        "answering the requests in flight.",
    )
    parser.add_argument(
        "--model",
        dest="model_base_path",
        metavar="DIR",
        default=PipelineConfig().serving_dir,
        help="Base directory of numeric versions (default: %(default)s).",
    )
    parser.add_argument(
        "--model-name",
        default=settings.SERVING_MODEL_NAME,
        help="Name clients use for --model (default: %(default)s).",
    )
    parser.add_argument(
        "--model-config-file",
        default=None,
        help="TF Serving ModelServerConfig text proto: several models, "
        "model_version_policy, version_labels. Replaces --model/--model-name.",
    )
    parser.add_argument(
        "--model-config-file-poll-wait-seconds",
        dest="model_config_file_poll_wait_s",
        metavar="SECONDS",
        type=float,
        default=0.0,
        help="Re-read --model-config-file this often; 0 reads it once (default).",
    )
    parser.add_argument(
        "--from-registry",
        action="store_true",
        help="Serve the versions `agnews models` labels stable and canary (the registry's "
        "models.config beside --model), following each promotion or rollback within "
        "--file-system-poll-wait-seconds (unless --model-config-file-poll-wait-seconds says).",
    )
    parser.add_argument(
        "--canary-percent",
        type=float,
        default=0.0,
        metavar="P",
        help="Share (0-100) of requests naming no version or label that the version labelled "
        "canary answers; the rest go to stable (default: %(default)s).",
    )
    parser.add_argument(
        "--canary-max-error-rate",
        type=float,
        default=None,
        metavar="R",
        help="Take the canary out of traffic once more than this share of its last "
        "--canary-error-window model calls failed; with --from-registry the registry records "
        "an automatic rollback and the canary is unloaded (default: never).",
    )
    parser.add_argument(
        "--canary-error-window",
        type=console.at_least_one,
        default=settings.DEFAULT_CANARY_ERROR_WINDOW,
        metavar="N",
        help="(default: %(default)s)",
    )
    parser.add_argument(
        "--metadata-path",
        default=PipelineConfig().metadata_path,
        help="With --from-registry: the ML Metadata store holding the registry "
        "(default: %(default)s).",
    )
    console.add_metadata_server_arguments(parser)
    parser.add_argument(
        "--pipeline-name",
        default=PipelineConfig().pipeline_name,
        help="With --from-registry: the pipeline whose pushes it serves (default: %(default)s).",
    )
    parser.add_argument(
        "--file-system-poll-wait-seconds",
        dest="file_system_poll_wait_s",
        metavar="SECONDS",
        type=float,
        default=settings.DEFAULT_FILE_SYSTEM_POLL_WAIT_S,
        help="How often to look for new versions (default: %(default)s).",
    )
    parser.add_argument(
        "--host",
        default=settings.DEFAULT_SERVE_HOST,
        help="Address to bind (default: %(default)s, this machine only).",
    )
    parser.add_argument(
        "--rest-port",
        "--port",
        dest="rest_port",
        type=int,
        default=settings.DEFAULT_SERVE_PORT,
        help="REST port (default: %(default)s; --port is the same flag).",
    )
    grpc = parser.add_mutually_exclusive_group()
    grpc.add_argument(
        "--grpc-port",
        type=int,
        default=settings.DEFAULT_GRPC_PORT,
        help="gRPC port (default: %(default)s).",
    )
    grpc.add_argument(
        "--no-grpc",
        dest="grpc_port",
        action="store_const",
        const=None,
        help="Serve REST only.",
    )
    parser.add_argument("--max-body-bytes", type=int, default=settings.DEFAULT_MAX_BODY_BYTES)
    parser.add_argument(
        "--max-batch",
        type=int,
        default=settings.DEFAULT_MAX_BATCH,
        help="Most rows in one request (default: %(default)s).",
    )
    parser.add_argument(
        "--no-batching",
        action="store_false",
        dest="batching",
        help="Run each request's own signature call instead of batching "
        "concurrent requests together.",
    )
    parser.add_argument(
        "--batch-max-rows",
        type=console.at_least_one,
        default=settings.DEFAULT_BATCH_MAX_ROWS,
        help="Most rows one batched call gathers; larger requests are split "
        "(default: %(default)s).",
    )
    parser.add_argument(
        "--batch-timeout-ms",
        type=float,
        default=settings.DEFAULT_BATCH_TIMEOUT_MS,
        help="How long a batch waits for more requests while another batch is "
        "running; with none running it starts at once (default: %(default)s).",
    )
    parser.add_argument(
        "--batch-threads",
        type=console.at_least_one,
        default=settings.DEFAULT_BATCH_THREADS,
        help="Batches run at once (default: one per CPU core).",
    )
    parser.add_argument(
        "--tensorflow-intra-op-parallelism",
        "--tensorflow_intra_op_parallelism",
        dest="intra_op_threads",
        type=console.non_negative,
        default=settings.DEFAULT_INTRA_OP_THREADS,
        help="Threads one TensorFlow op may use; 0 lets TensorFlow choose (default: "
        "%(default)s: a serving batch is too small to split well).",
    )
    parser.add_argument(
        "--tensorflow-inter-op-parallelism",
        "--tensorflow_inter_op_parallelism",
        dest="inter_op_threads",
        type=console.non_negative,
        default=settings.DEFAULT_INTER_OP_THREADS,
        help="TensorFlow ops run at once; 0 lets TensorFlow choose (default: %(default)s).",
    )
    parser.add_argument(
        "--log-requests",
        metavar="DIR",
        default=None,
        help="Write sampled requests and answers as PredictionLog TFRecords in DIR.",
    )
    parser.add_argument(
        "--log-sample-rate",
        type=float,
        default=settings.DEFAULT_LOG_SAMPLE_RATE,
        help="Share of requests --log-requests writes (default: %(default)s).",
    )


def serve_options(args):
    """The server's options from `agnews serve`'s flags, whose dests are ServeOptions' field
    names: one list of options, no copies."""
    from agnews.serving import server

    fields = dataclasses.fields(server.ServeOptions)
    return server.ServeOptions(**{field.name: getattr(args, field.name) for field in fields})


def _serve(args) -> int:
    from agnews.serving import server

    try:
        options = serve_options(args)
        server.serve_until_signalled(
            options,
            on_ready=lambda running: print(
                f"Serving {running.where()} (Ctrl-C or SIGTERM stops)", flush=True
            ),
            on_canary_taken_out=_registry_rollback(args) if options.from_registry else None,
        )
    except (ValueError, OSError) as error:
        return console.fail("serve", error)
    return ExitCode.OK


def _registry_rollback(args):
    """What `serve --from-registry` does when it takes an erroring canary out: the registry
    records an automatic rollback (and rewrites the config, so the version is unloaded). The
    store is checked now, at start-up: the record is made on the serving path, where an error
    would only be logged."""
    address = console.metadata_address(args, args.metadata_path)
    metadata_connection.check(address)

    def record(model_name: str, version: int, error_rate: float) -> None:
        from agnews import registry

        if model_name != settings.SERVING_MODEL_NAME:
            return
        registry.model_registry(
            address,
            args.pipeline_name,
            args.model_base_path,
        ).take_out_canary(
            version,
            f"agnews serve: {error_rate:.0%} of its last {args.canary_error_window} calls failed "
            f"(more than {args.canary_max_error_rate:g})",
        )

    return record


def _add_beam_worker_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "beam-worker",
        help="A Beam SDK worker pool for runs with --beam-workers HOST:PORT.",
        description="Serves a pool of Beam SDK workers (Beam's EXTERNAL environment) whose workers "
        "run this environment's Python, with the agnews installed here, until SIGTERM or Ctrl-C. "
        "Start it on each worker host, then `agnews run --beam-workers HOST:PORT`.",
    )
    parser.add_argument(
        "--port", type=console.at_least_one, required=True, help="Port to serve the pool on."
    )


def _add_beam_job_service_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "beam-job-service",
        help="A Beam job service for runs with --beam-job-service HOST:PORT.",
        description="Serves Beam's portable Job API on every address of this host until SIGTERM "
        "or Ctrl-C: it runs each job it is given on the SDK workers the job names "
        "(--beam-workers), the part a Flink or Spark job server plays on a cluster.",
    )
    parser.add_argument(
        "--port", type=console.at_least_one, required=True, help="Port to serve the Job API on."
    )
    parser.add_argument(
        "--staging-dir",
        metavar="DIR",
        help="Where jobs' staged artifacts are kept (default: a temporary directory).",
    )


def _beam_worker(args) -> int:
    from agnews import beam_cluster

    beam_cluster.serve_worker_pool(args.port)
    return ExitCode.OK


def _beam_job_service(args) -> int:
    from agnews import beam_cluster

    beam_cluster.serve_job_service(args.port, args.staging_dir)
    return ExitCode.OK


def _add_skew_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "skew", help="Compare logged serving requests with the training statistics (TFDV)."
    )
    parser.add_argument(
        "--logs", required=True, help="The --log-requests directory of `agnews serve`."
    )
    parser.add_argument(
        "--run-dir",
        default=os.path.dirname(PipelineConfig().metadata_path),
        help="Directory holding the runs' metadata.sqlite (default: %(default)s).",
    )
    console.add_metadata_server_arguments(parser)


def _skew(args) -> int:
    from agnews import skew

    address = console.metadata_address(args, os.path.join(args.run_dir, "metadata.sqlite"))
    logged = skew.logged_statistics(args.logs)
    if not logged:
        return console.fail("skew", f"no request logs (*.tfrecord) in {args.logs}")
    for (model_name, version), (rows, served) in sorted(logged.items()):
        try:
            uri, train = skew.training_statistics(address, version)
        except LookupError as error:
            print(f"agnews skew: {model_name} version {version}: {error}", file=sys.stderr)
            return ExitCode.STOPPED
        print(f"{model_name} version {version}: {rows} logged rows vs training statistics {uri}")
        print(
            f"  {'feature':<12} {'L-infinity':>10} {'JS divergence':>13} "
            f"{'avg length train':>16} {'served':>7}"
        )
        for row in skew.compare(train, served):
            print(
                f"  {row.feature:<12} {row.distances['L_INFTY']:>10.4f} "
                f"{row.distances['JENSEN_SHANNON_DIVERGENCE']:>13.4f} "
                f"{row.train_avg_length:>16.1f} {row.served_avg_length:>7.1f}"
            )
    return ExitCode.OK


def _add_monitor_parser(subparsers) -> None:
    defaults = PipelineConfig()
    parser = subparsers.add_parser(
        "monitor",
        help="Compare the requests logged since the last run with training and the window "
        "before; alert past schemas/monitor.ini's thresholds (exit 4).",
    )
    parser.add_argument(
        "--logs", required=True, help="The --log-requests directory of `agnews serve`."
    )
    parser.add_argument(
        "--report-dir",
        help="Dated reports and the state of what was read (default: LOGS/monitor).",
    )
    parser.add_argument(
        "--metadata-path",
        default=defaults.metadata_path,
        help="ML Metadata store of the runs (default: %(default)s).",
    )
    console.add_metadata_server_arguments(parser)
    parser.add_argument(
        "--model",
        default=defaults.serving_dir,
        help="Base directory of the served versions, for their vocabulary (default: %(default)s).",
    )
    parser.add_argument(
        "--thresholds",
        default=str(MONITOR_THRESHOLDS_FILE),
        help="The thresholds file (default: %(default)s).",
    )
    parser.add_argument("--webhook", help="POST the alerts as JSON to this URL.")
    parser.add_argument(
        "--export-span",
        metavar="DIR",
        help="Also write the window's requests as an unlabelled span, DIR/span-<N>/requests.csv.",
    )


def _monitor(args) -> int:
    from agnews import monitor

    report_dir = args.report_dir or os.path.join(args.logs, "monitor")
    try:
        result = monitor.run(
            args.logs,
            report_dir,
            console.metadata_address(args, args.metadata_path),
            args.model,
            args.webhook,
            args.export_span,
            Path(args.thresholds),
        )
    except monitor.MonitorError as error:
        return console.fail("monitor", error)
    if result is None:
        print(f"No new request logs in {args.logs} since the last run.")
        return ExitCode.OK
    for check in result.alerts:
        print(f"ALERT: {check.measure} = {check.value:.4f} > {check.threshold:g}")
    if result.exported:
        print(f"Exported span: {result.exported}")
    print(f"Window: {result.window.rows} rows; report: {result.report_path}")
    return ExitCode.ALERT if result.alerts else ExitCode.OK


def build_parser() -> argparse.ArgumentParser:
    """`agnews` and its commands."""
    parser = argparse.ArgumentParser(prog="agnews", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    pipeline_commands.add_run_parser(subparsers)
    _add_predict_parser(subparsers)
    _add_score_parser(subparsers)
    _add_serve_parser(subparsers)
    _add_skew_parser(subparsers)
    _add_beam_worker_parser(subparsers)
    _add_beam_job_service_parser(subparsers)
    _add_monitor_parser(subparsers)
    models_command.add_models_parser(subparsers)
    models_command.add_card_parser(subparsers)
    pipeline_commands.add_report_parser(subparsers)
    pipeline_commands.add_compile_parser(subparsers)
    return parser


# Commands that only serve Beam's APIs: TensorFlow loads in the workers they start, not in them.
BEAM_SERVICES = ("beam-worker", "beam-job-service")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not getattr(args, "print_config", False) and args.command not in BEAM_SERVICES:
        quiet.import_tensorflow()  # the other commands need it: import it once, without its noise
    commands = {
        "run": pipeline_commands.run,
        "predict": _predict,
        "score": _score,
        "serve": _serve,
        "skew": _skew,
        "beam-worker": _beam_worker,
        "beam-job-service": _beam_job_service,
        "monitor": _monitor,
        "models": models_command.models,
        "card": models_command.card,
        "report": pipeline_commands.report,
        "compile": pipeline_commands.compile_pipeline,
    }
    metadata_connection.use_password_file(getattr(args, "metadata_password_file", None))
    try:
        return commands[args.command](args)
    except (metadata_connection.MetadataStoreError, run_lock.RunInProgress) as error:
        return console.fail(args.command, error)  # a lock `run` itself did not take: exit 1
    except BaseException as error:  # Ctrl-C itself, or an error it caused
        if not _caused_by_ctrl_c(error):
            raise
    print(f"agnews {args.command}: interrupted.", file=sys.stderr)
    return ExitCode.INTERRUPTED


def _caused_by_ctrl_c(error: BaseException) -> bool:
    """Whether a KeyboardInterrupt is in the error's chain: Beam re-raises one that hits a
    DoFn as a RuntimeError('KeyboardInterrupt [while running STEP]') raised while handling it."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, KeyboardInterrupt):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


if __name__ == "__main__":
    sys.exit(main())
