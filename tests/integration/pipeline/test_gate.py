"""The push gate judges the overall eval accuracy, the figure the run prints: TFX's Evaluator
executor, run on the model and examples of the end-to-end run's newest evaluation with the
pipeline's eval_config."""

import glob
import json

from tfx.components.evaluator.executor import Executor as EvaluatorExecutor
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from components import features
from pipeline import local_runner, metadata, report
from pipeline.config import PipelineConfig
from pipeline.pipeline import eval_config


def _evaluate(evaluated: dict[str, str], out_dir, min_accuracy: float) -> tuple[bool, str]:
    """(blessed, evaluation URI) of the evaluated model (`evaluated`: its examples' and its
    URI) under a gate at `min_accuracy`."""
    examples = standard_artifacts.Examples()
    examples.uri = evaluated["examples"]
    examples.split_names = json.dumps(
        [features.TRAIN_SPLIT, features.EVAL_SPLIT, features.HOLDOUT_SPLIT]
    )
    model = standard_artifacts.Model()
    model.uri = evaluated["model"]
    evaluation, blessing = standard_artifacts.ModelEvaluation(), standard_artifacts.ModelBlessing()
    evaluation.uri, blessing.uri = str(out_dir / "evaluation"), str(out_dir / "blessing")
    config = eval_config(PipelineConfig(min_accuracy=min_accuracy))
    EvaluatorExecutor().Do(
        {"examples": [examples], "model": [model]},
        {"evaluation": [evaluation], "blessing": [blessing]},
        {
            "eval_config": proto_utils.proto_to_json(config),
            "example_splits": json.dumps([features.EVAL_SPLIT]),
        },
    )
    blessed = bool(glob.glob(str(out_dir / "blessing" / "BLESSED")))
    assert blessed == (blessing.get_int_custom_property("blessed") == 1)
    return blessed, evaluation.uri


def test_the_bar_holds_for_the_overall_accuracy_not_for_each_slice(first_run, tmp_path):
    root, _ = first_run
    store = metadata.open_store(str(root / "metadata.sqlite"))
    # Later e2e tests ingest and train again: the newest evaluation, and what it evaluated.
    evaluation = metadata.latest_output(store, "agnews", "Evaluator", "ModelEvaluation")
    execution = metadata.producer(store, evaluation.id)
    evaluated = {
        key: store.get_artifacts_by_id(metadata.inputs(store, execution, key))[0].uri
        for key in ("examples", "model")
    }
    metrics = report.load_evaluation(evaluation.uri).metrics
    overall = metrics[""][report.ACCURACY]
    worst_slice = min(values[report.ACCURACY] for name, values in metrics.items() if name)
    assert worst_slice < overall  # some slice (of a few dozen examples) is below the whole

    # A bar between the worst slice and the whole: blessed, and no bar failed.
    blessed, uri = _evaluate(evaluated, tmp_path / "between", (worst_slice + overall) / 2)
    assert blessed and local_runner.gate_failures(uri) == []

    # A bar above the whole: refused, and the message quotes the overall figure it judged.
    blessed, uri = _evaluate(evaluated, tmp_path / "above", min(overall + 0.05, 1.0))
    assert not blessed
    assert local_runner.gate_failures(uri) == [
        f"eval accuracy {overall:.4f} is below the bar {min(overall + 0.05, 1.0):g}"
    ]
