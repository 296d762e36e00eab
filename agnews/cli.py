"""`agnews`: run the pipeline, query, serve and score with a pushed model, compare served
requests with the training data.

Each command imports only what it needs, when it runs: help and --print-config need no
TensorFlow; predict, serve and report need TensorFlow but not TFX, TFT, TFMA or Beam (report
reads TFMA's and TFDV's results once, then from its cache); skew needs TFDV.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import sys
import warnings

# TensorFlow's C++ info and warning lines (dozens per model load in TFMA) and Google client
# libraries' Python-version notices drown the useful output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
warnings.filterwarnings("ignore", category=FutureWarning)

import components  # noqa: F401  (Keras 2 before TensorFlow)
from components import features, quiet, settings
from components.artifacts import ACCEPTED, BLANK_LINE, rejected_counts
from pipeline.config import PipelineConfig, load_config

# Exit codes: 0 done (pushed, or not blessed without --require-push); 1 stopped (bad data,
# broken data contract, missing files); 2 the model (never the --push-baseline baseline) not
# pushed with --require-push; 3 refused (another
# run holds the same MLMD store or pipeline root); 130 interrupted (Ctrl-C), as shells count it.
# `agnews score` uses the same: 0 done, 1 stopped (no model, unreadable or empty input, too many
# rejected rows, output not empty), 130 interrupted.
EXIT_INTERRUPTED = 130


def _add_pipeline_options(parser: argparse.ArgumentParser) -> None:
    """Flags that override the config (defaults, then --config FILE, then flags)."""
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
        type=_non_negative,
        metavar="N",
        help="Ingest span-<N> instead of the newest span (a backfill); the window ends at N.",
    )
    option(
        "--window",
        type=_at_least_one,
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
    option("--serving-dir", help=f"Pusher's TF Serving base directory (default: {d.serving_dir}).")
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
        help=f"Share of embedding channels dropped while training (default: {d.embedding_dropout}).",
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
        help=f"Fail the run when more input rows than this are rejected (default: {d.max_bad_fraction}).",
    )
    option(
        "--beam-arg",
        action="append",
        dest="beam_args",
        help="A Beam pipeline option for every Beam-powered component, e.g. "
        "--beam-arg=--direct_num_workers=2 (repeatable).",
    )
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


def _add_compile_parser(subparsers) -> None:
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


def _compile(args) -> int:
    from pipeline import kubeflow_runner

    try:
        config = dataclasses.replace(
            _config_from_args(args),
            test_split=bool(getattr(args, "test_split", False)),
            spans=bool(getattr(args, "spans", False)),
        )
    except ValueError as error:
        print(f"agnews compile failed: {error}", file=sys.stderr)
        return 1
    if getattr(args, "print_config", False):
        print(kubeflow_runner.for_image(config, args.image).to_json())
        return 0
    try:
        path = kubeflow_runner.compile_pipeline(
            config, args.output, args.image, getattr(args, "trainer_accelerator", None)
        )
    except ValueError as error:
        print(f"agnews compile failed: {error}", file=sys.stderr)
        return 1
    print(
        f"KFP v2 pipeline written to {path}: upload it to Kubeflow Pipelines or Vertex AI Pipelines."
    )
    return 0


def _non_negative(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError("must be a whole number of at least 0")
    return int(text)


def _at_least_one(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError("must be a whole number of at least 1")
    return int(text)


def _add_run_parser(subparsers) -> None:
    run = subparsers.add_parser(
        "run",
        argument_default=argparse.SUPPRESS,
        help="Run the whole pipeline locally (LocalDagRunner).",
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
        "--keep",
        type=_at_least_one,
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


def _config_from_args(args) -> PipelineConfig:
    names = {f.name for f in dataclasses.fields(PipelineConfig)}
    return load_config(
        getattr(args, "config_file", None), **{k: v for k, v in vars(args).items() if k in names}
    )


def _run(args) -> int:
    try:
        config = _config_from_args(args)
    except ValueError as error:
        print(f"agnews run failed: {error}", file=sys.stderr)
        return 1
    if getattr(args, "print_config", False):
        print(config.to_json())
        return 0
    from components import trainer
    from pipeline import run_lock

    if trainer.cluster_size() > 1:
        print(
            f"agnews run refused: TF_CONFIG names {trainer.cluster_size()} training processes, but "
            "agnews run trains in this one (LocalDagRunner). Multi-worker training runs the "
            "Trainer once per worker on a cluster (see the README's Kubeflow / Vertex AI "
            "section); unset TF_CONFIG to train here.",
            file=sys.stderr,
        )
        return 1
    trainer.distribution_strategy()  # settled before any component runs a TensorFlow op
    quiet.drop_tfx_notices()
    try:
        with run_lock.exclusive(config.metadata_path, config.pipeline_root):
            from components import drift, ingest, validation
            from pipeline import beam_packaging, local_runner, run_log

            describe = functools.partial(
                run_log.describe_component, config.metadata_path, config.pipeline_name
            )
            try:
                with run_log.quiet_run(config.run_dir, describe, args.verbose) as log_path:
                    summary = local_runner.run(config)
            except (
                ingest.IngestError,
                validation.DataContractError,
                drift.DriftError,
                FileNotFoundError,
                beam_packaging.WheelBuildError,
            ) as error:
                print(f"agnews run failed: {error}\nFull log: {log_path}", file=sys.stderr)
                return 1
    except run_lock.RunInProgress as error:
        print(f"agnews run refused: {error}", file=sys.stderr)
        return 3
    rows = summary.rows.get(ACCEPTED, 0) + sum(rejected_counts(summary.rows).values())
    print(
        f"Span {summary.span} input rows: {rows}, accepted {summary.rows.get(ACCEPTED, 0)}, "
        + _rejected_rows(summary.rows, summary.rejected_rows_file)
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
        return 0
    print(f"Trained on spans {', '.join(map(str, summary.window))}.")
    _print_report(config.run_dir, config)
    print(f"Full log: {log_path}")
    if summary.scores_note:
        print(summary.scores_note)
    print(_push_outcome("Model", summary, config))
    if summary.baseline:
        print(_push_outcome("Baseline", summary.baseline, config))
    pushed_dirs = [
        serving_dir
        for push, serving_dir in (
            (summary, config.serving_dir),
            (summary.baseline, config.baseline_serving_dir),
        )
        if push and push.pushed
    ]
    for serving_dir in pushed_dirs if args.keep is not None else []:
        for removed in prune_versions(serving_dir, args.keep):
            print(f"Removed old version: {removed}")
    return 0 if summary.pushed or not args.require_push else 2


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
    )


def _rejected_rows(rows: dict[str, int], rejected_rows_file: str | None) -> str:
    """'rejected R (reason: n, ...; see FILE)', and the blank lines skipped, of a row count."""
    rejected, blank = rejected_counts(rows), rows.get(BLANK_LINE, 0)
    return (
        f"rejected {sum(rejected.values())}"
        + (
            f" ({', '.join(f'{k}: {v}' for k, v in sorted(rejected.items()))}; "
            f"see {rejected_rows_file})"
            if rejected
            else ""
        )
        + (f"; {blank} blank line{'s' if blank != 1 else ''} skipped" if blank else "")
    )


def _print_report(run_dir: str, config: PipelineConfig) -> None:
    from pipeline import report

    report_path, headline = report.write_report(run_dir, config.pipeline_name, config.metadata_path)
    print(headline)
    print(f"Report: {report_path}")


def _add_report_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "report", help="Rewrite report.md and its plots for a run directory."
    )
    parser.add_argument(
        "run_dir",
        nargs="?",
        default=os.path.dirname(PipelineConfig().metadata_path),
        metavar="RUN",
        help="Directory holding metadata.sqlite (default: %(default)s).",
    )


def _report(args) -> int:
    try:
        _print_report(
            args.run_dir,
            PipelineConfig(metadata_path=os.path.join(args.run_dir, "metadata.sqlite")),
        )
    except FileNotFoundError as error:
        print(f"agnews report failed: {error}", file=sys.stderr)
        return 1
    return 0


def prune_versions(serving_dir: str, keep: int) -> list[str]:
    """Deletes all but the newest `keep` numeric versions; returns the deleted directories."""
    import tensorflow as tf

    from agnews.versions import model_versions

    if keep < 1:
        raise ValueError("--keep must be at least 1: the newest version is always kept.")
    doomed = [f"{serving_dir}/{v}" for v in model_versions(serving_dir)[:-keep]]
    for directory in doomed:
        tf.io.gfile.rmtree(directory)
    return doomed


def _add_predict_parser(subparsers) -> None:
    predict = subparsers.add_parser("predict", help="Classify headlines with a pushed SavedModel.")
    predict.add_argument(
        "--model",
        default=PipelineConfig().serving_dir,
        help="A model version directory, or a base directory whose newest "
        "numeric version is used (default: %(default)s).",
    )
    predict.add_argument(
        "--description",
        default="",
        help="Description text paired with every headline (default: empty).",
    )
    predict.add_argument("text", nargs="+", help="Headline text, one argument per example.")


def _predict(args) -> int:
    from agnews import predict, versions

    try:
        version_dir = versions.resolve_version_dir(args.model)
    except FileNotFoundError as error:
        print(f"agnews predict failed: {error}", file=sys.stderr)
        return 1
    print(f"Model: {version_dir}", flush=True)
    with quiet.filtered_stderr():
        rows = predict.predict(version_dir, args.text, [args.description] * len(args.text))
    for row in rows:
        probabilities = "  ".join(f"{name}={p:.3f}" for name, p in row["probabilities"].items())
        print(f"{row['label']:<9} {probabilities}  | {row['title']}")
    return 0


def _add_score_parser(subparsers) -> None:
    from agnews.score import PREDICTION_LOGS_PREFIX, SCORES_PREFIX, SUMMARY_FILE_NAME

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
{PREDICTION_LOGS_PREFIX}-*.gz (TFRecords of TF Serving PredictionLogs), and {SUMMARY_FILE_NAME},
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


def _score(args) -> int:
    from agnews import score
    from components import ingest
    from pipeline import beam_packaging

    quiet.drop_tfx_notices()
    try:
        summary = score.score(
            args.inputs,
            args.model,
            args.output,
            args.beam_args,
            args.prediction_logs,
            args.max_bad_fraction,
            overwrite=args.overwrite,
        )
    except (score.ScoreError, ingest.IngestError, beam_packaging.WheelBuildError) as error:
        print(f"agnews score failed: {error}", file=sys.stderr)
        return 1
    print(
        f"Model: {summary.model_dir} (version {summary.model_version}, loaded "
        f"{summary.model_loads} time{'s' if summary.model_loads != 1 else ''})"
    )
    rows = summary.rows.get(ACCEPTED, 0) + sum(rejected_counts(summary.rows).values())
    print(
        f"Input rows: {rows} in {len(summary.inputs)} file{'s' if len(summary.inputs) != 1 else ''}, "
        f"scored {summary.scored}, " + _rejected_rows(summary.rows, summary.rejected_rows_file)
    )
    print(
        f"Scores: {os.path.join(args.output, score.SCORES_PREFIX)}-*.csv "
        f"({len(summary.scores)} shard{'s' if len(summary.scores) != 1 else ''})"
        + (
            f"; prediction logs: {os.path.join(args.output, score.PREDICTION_LOGS_PREFIX)}-*.gz"
            if summary.prediction_logs
            else ""
        )
    )
    return 0


def _add_serve_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="Serve pushed models over TF Serving's REST and gRPC APIs.",
        description="TF Serving's REST and gRPC APIs for pushed models: newest version of --model, "
        "or the models of a --model-config-file. SIGTERM or Ctrl-C stops it after "
        "answering the requests in flight.",
    )
    parser.add_argument(
        "--model",
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
        type=float,
        default=0.0,
        help="Re-read --model-config-file this often; 0 reads it once (default).",
    )
    parser.add_argument(
        "--file-system-poll-wait-seconds",
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
    parser.add_argument(
        "--grpc-port",
        type=int,
        default=settings.DEFAULT_GRPC_PORT,
        help="gRPC port (default: %(default)s).",
    )
    parser.add_argument("--no-grpc", action="store_true", help="Serve REST only.")
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
        type=_at_least_one,
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
        type=_at_least_one,
        default=settings.DEFAULT_BATCH_THREADS,
        help="Batches run at once (default: one per CPU core).",
    )
    parser.add_argument(
        "--tensorflow-intra-op-parallelism",
        "--tensorflow_intra_op_parallelism",
        dest="intra_op_threads",
        type=_non_negative,
        default=settings.DEFAULT_INTRA_OP_THREADS,
        help="Threads one TensorFlow op may use; 0 lets TensorFlow choose (default: "
        "%(default)s: a serving batch is too small to split well).",
    )
    parser.add_argument(
        "--tensorflow-inter-op-parallelism",
        "--tensorflow_inter_op_parallelism",
        dest="inter_op_threads",
        type=_non_negative,
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


def _serve(args) -> int:
    from agnews.serving import server

    options = server.ServeOptions(
        model_base_path=args.model,
        model_name=args.model_name,
        model_config_file=args.model_config_file,
        model_config_file_poll_wait_s=args.model_config_file_poll_wait_seconds,
        file_system_poll_wait_s=args.file_system_poll_wait_seconds,
        host=args.host,
        rest_port=args.rest_port,
        grpc_port=None if args.no_grpc else args.grpc_port,
        max_body_bytes=args.max_body_bytes,
        max_batch=args.max_batch,
        batching=args.batching,
        batch_max_rows=args.batch_max_rows,
        batch_timeout_ms=args.batch_timeout_ms,
        batch_threads=args.batch_threads,
        log_requests=args.log_requests,
        log_sample_rate=args.log_sample_rate,
        intra_op_threads=args.intra_op_threads,
        inter_op_threads=args.inter_op_threads,
    )
    try:
        server.serve_until_signalled(
            options,
            on_ready=lambda running: print(
                f"Serving {running.where()} (Ctrl-C or SIGTERM stops)", flush=True
            ),
        )
    except (ValueError, OSError) as error:
        print(f"agnews serve failed: {error}", file=sys.stderr)
        return 1
    return 0


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


def _skew(args) -> int:
    from agnews import skew

    logged = skew.logged_statistics(args.logs)
    if not logged:
        print(f"agnews skew failed: no request logs (*.tfrecord) in {args.logs}", file=sys.stderr)
        return 1
    for (model_name, version), (rows, served) in sorted(logged.items()):
        try:
            uri, train = skew.training_statistics(
                os.path.join(args.run_dir, "metadata.sqlite"), version
            )
        except LookupError as error:
            print(f"agnews skew: {model_name} version {version}: {error}", file=sys.stderr)
            return 1
        print(f"{model_name} version {version}: {rows} logged rows vs training statistics {uri}")
        print(
            f"  {'feature':<12} {'L-infinity':>10} {'JS divergence':>13} {'avg length train':>16} {'served':>7}"
        )
        for row in skew.compare(train, served):
            print(
                f"  {row.feature:<12} {row.distances['L_INFTY']:>10.4f} "
                f"{row.distances['JENSEN_SHANNON_DIVERGENCE']:>13.4f} {row.train_avg_length:>16.1f} "
                f"{row.served_avg_length:>7.1f}"
            )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agnews", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_run_parser(subparsers)
    _add_predict_parser(subparsers)
    _add_score_parser(subparsers)
    _add_serve_parser(subparsers)
    _add_skew_parser(subparsers)
    _add_report_parser(subparsers)
    _add_compile_parser(subparsers)
    args = parser.parse_args(argv)
    if not getattr(args, "print_config", False):
        quiet.import_tensorflow()  # every other command needs it: import it once, without its noise
    commands = {
        "run": _run,
        "predict": _predict,
        "score": _score,
        "serve": _serve,
        "skew": _skew,
        "report": _report,
        "compile": _compile,
    }
    try:
        return commands[args.command](args)
    except KeyboardInterrupt:
        print(f"agnews {args.command}: interrupted.", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
