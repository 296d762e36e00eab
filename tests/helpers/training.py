"""TFX's Transform executor and what TFX's Trainer hands run_fn, run by hand so that run_fn and
warm starts are tested (and benchmarked) outside a pipeline run."""

import json

from tfx.components.trainer.fn_args_utils import DataAccessor, FnArgs
from tfx.components.transform import executor as transform_executor
from tfx.components.util import tfxio_utils
from tfx.proto import transform_pb2
from tfx.types import standard_artifacts
from tfx.utils import io_utils, proto_utils

from components import features, preprocessing, rows
from pipeline.config import SCHEMA_DIR
from tests.helpers.data import run_example_gen


def fn_args(examples, graph: str, out_dir, custom_config, base_model: str | None = None) -> FnArgs:
    """What TFX's Trainer gives run_fn for a Transform output (`examples` with train and eval
    splits, the transform graph dir `graph`), writing under `out_dir`."""
    factory = tfxio_utils.get_tf_dataset_factory_from_artifact([examples], [])
    return FnArgs(
        train_files=[f"{examples.uri}/Split-train/*"],
        eval_files=[f"{examples.uri}/Split-eval/*"],
        transform_output=graph,
        serving_model_dir=str(out_dir / "serving_model"),
        model_run_dir=str(out_dir / "logs"),
        custom_config=custom_config,
        base_model=base_model,
        data_accessor=DataAccessor(
            tf_dataset_factory=factory, record_batch_factory=None, data_view_decode_fn=None
        ),
    )


def run_transform(root, lines: list[bytes], ngrams: bool = True):
    """(transformed examples, transform graph dir): ingestion then TFX's Transform executor, as
    the pipeline runs them, over CSV `lines` (the vocabulary is built over their train split;
    the holdout split is transformed too, for bench/warm_start.py)."""
    data = root / "data"
    data.mkdir(parents=True)
    (data / "train.csv").write_bytes(b"\n".join(lines) + b"\n")
    examples, error = run_example_gen(
        root / "examples", rows.IngestSettings(), str(data), {features.TRAIN_SPLIT: "train.csv"}
    )
    assert error is None, error
    schema = standard_artifacts.Schema()  # ImportSchemaGen's artifact: a dir of one schema file
    schema.uri = str(root / "schema")
    io_utils.copy_file(str(SCHEMA_DIR / "schema.pbtxt"), f"{schema.uri}/schema.pbtxt")
    graph, transformed = standard_artifacts.TransformGraph(), standard_artifacts.Examples()
    graph.uri, transformed.uri = str(root / "transform_graph"), str(root / "transformed_examples")
    transform_executor.Executor().Do(
        {"examples": [examples], "schema": [schema]},
        {"transform_graph": [graph], "transformed_examples": [transformed]},
        {
            "preprocessing_fn": (
                f"{preprocessing.__name__}.{preprocessing.preprocessing_fn.__name__}"
            ),
            "custom_config": json.dumps({"ngrams": ngrams}),
            "disable_statistics": 1,
            "splits_config": proto_utils.proto_to_json(
                transform_pb2.SplitsConfig(
                    analyze=[features.TRAIN_SPLIT],
                    transform=[features.TRAIN_SPLIT, features.EVAL_SPLIT, features.HOLDOUT_SPLIT],
                )
            ),
        },
    )
    return transformed, graph.uri
