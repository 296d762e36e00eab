"""`agnews`: run the pipeline and query a pushed model."""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys

# TensorFlow's C++ info and warning lines (dozens per model load in TFMA) drown the useful output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import components  # noqa: F401  (Keras 2 before TensorFlow)
from components import features, ingest, model, validation
from pipeline.config import PipelineConfig


def _add_run_parser(subparsers) -> None:
    defaults = PipelineConfig()
    run = subparsers.add_parser("run", help="Run the whole pipeline locally (LocalDagRunner).")
    run.add_argument("--data", default=defaults.data,
                     help="Directory of canonical AG News CSV: train*.csv[.gz], optional test*.csv[.gz], "
                          "or tfds:ag_news_subset[:DATA_DIR] (default: the embedded 3,000-row sample).")
    run.add_argument("--pipeline-root", default=defaults.pipeline_root)
    run.add_argument("--metadata-path", default=defaults.metadata_path,
                     help="MLMD sqlite file (default: %(default)s).")
    run.add_argument("--serving-dir", default=defaults.serving_dir,
                     help="Pusher's TF Serving base directory (default: %(default)s).")
    run.add_argument("--model", choices=model.MODEL_NAMES, default=defaults.model,
                     help="bilstm2: the masked two-layer BiLSTM; lstm: LSTM(8); simple_rnn: "
                          "SimpleRNN(16) (default: %(default)s).")
    run.add_argument("--text", choices=features.TEXT_CHOICES, default=defaults.text,
                     help="Text the model reads (default: %(default)s).")
    run.add_argument("--mixed-precision", action="store_true",
                     help="float16 compute on GPUs (the softmax stays float32).")
    run.add_argument("--epochs", type=int, default=defaults.epochs,
                     help="Most epochs; training stops earlier when eval loss stops improving "
                          "for --patience epochs and keeps the best weights (default: %(default)s).")
    run.add_argument("--patience", type=int, default=defaults.patience)
    run.add_argument("--batch-size", type=int, default=defaults.batch_size)
    run.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    run.add_argument("--max-tokens", type=int, default=defaults.max_tokens,
                     help="Tokens kept per example (default: %(default)s).")
    run.add_argument("--min-accuracy", type=float, default=defaults.min_accuracy,
                     help="Eval accuracy a model needs to be blessed and pushed (default: %(default)s).")
    run.add_argument("--max-accuracy-drop", type=float, default=defaults.max_accuracy_drop,
                     help="How far below the last blessed model's accuracy a candidate may fall "
                          "(default: %(default)s).")
    run.add_argument("--max-bad-fraction", type=float, default=defaults.max_bad_fraction,
                     help="Fail the run when more input rows than this are rejected (default: %(default)s).")
    run.add_argument("--beam-arg", action="append", default=[], dest="beam_args",
                     help="A Beam pipeline option for ExampleGen/StatisticsGen/Transform/Evaluator, "
                          "e.g. --beam-arg=--direct_num_workers=2 (repeatable).")
    run.add_argument("--no-cache", action="store_false", dest="enable_cache",
                     help="Re-run every component even when its inputs did not change.")


def _config_from_args(args) -> PipelineConfig:
    names = {f.name for f in dataclasses.fields(PipelineConfig)}
    return PipelineConfig(**{k: v for k, v in vars(args).items() if k in names})


def _run(args) -> int:
    from pipeline import local_runner

    config = _config_from_args(args)
    try:
        summary = local_runner.run(config)
    except (ingest.IngestError, validation.DataContractError, FileNotFoundError) as error:
        print(f"agnews run failed: {error}", file=sys.stderr)
        return 1
    rejected = {k: v for k, v in summary.rows.items() if k != ingest.ACCEPTED}
    print(f"Input rows: {sum(summary.rows.values())}, accepted {summary.rows.get(ingest.ACCEPTED, 0)}, "
          f"rejected {sum(rejected.values())}"
          + (f" ({', '.join(f'{k}: {v}' for k, v in sorted(rejected.items()))}; "
             f"see {summary.rejected_rows_file})" if rejected else ""))
    for split, accuracy in (("Eval", summary.eval_accuracy), ("Test", summary.test_accuracy)):
        if accuracy is not None:
            print(f"{split} accuracy: {accuracy:.4f}")
    if summary.pushed:
        print(f"Model pushed to: {summary.pushed_to}")
    else:
        print(f"Model NOT pushed: it was not blessed (min accuracy {config.min_accuracy}, "
              f"see {summary.evaluation_uri}).")
    return 0


def _add_predict_parser(subparsers) -> None:
    predict = subparsers.add_parser("predict", help="Classify headlines with a pushed SavedModel.")
    predict.add_argument("--model", default=PipelineConfig().serving_dir,
                         help="A model version directory, or a base directory whose newest "
                              "numeric version is used (default: %(default)s).")
    predict.add_argument("--description", default="",
                         help="Description text paired with every headline (default: empty).")
    predict.add_argument("text", nargs="+", help="Headline text, one argument per example.")


def _predict(args) -> int:
    from pipeline import predict

    try:
        version_dir = predict.resolve_version_dir(args.model)
    except FileNotFoundError as error:
        print(f"agnews predict failed: {error}", file=sys.stderr)
        return 1
    print(f"Model: {version_dir}")
    for row in predict.predict(version_dir, args.text, [args.description] * len(args.text)):
        probabilities = "  ".join(f"{name}={p:.3f}" for name, p in row["probabilities"].items())
        print(f"{row['label']:<9} {probabilities}  | {row['title']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agnews", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_run_parser(subparsers)
    _add_predict_parser(subparsers)
    args = parser.parse_args(argv)
    return {"run": _run, "predict": _predict}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
