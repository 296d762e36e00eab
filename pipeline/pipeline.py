"""The agnews TFX pipeline, defined once for every orchestrator."""
from __future__ import annotations

import os

import tensorflow_model_analysis as tfma
from tfx import v1 as tfx
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2

from components import features, ingest
from pipeline.config import PipelineConfig

PREPROCESSING_FN = "components.preprocessing.preprocessing_fn"
RUN_FN = "components.trainer.run_fn"
TRAIN_PATTERN = "train*.csv*"
TEST_PATTERN = "test*.csv*"


def input_config(data: str) -> example_gen_pb2.Input:
    """Split `train` from train*.csv[.gz]; split `test` too when such files exist."""
    import tensorflow as tf

    if not tf.io.gfile.glob(os.path.join(data, TRAIN_PATTERN)):
        raise FileNotFoundError(
            f"No training files {TRAIN_PATTERN} in {data}: --data needs a directory of canonical "
            "AG News CSV files (train.csv or train.csv.gz, optionally test.csv).")
    splits = [example_gen_pb2.Input.Split(name="train", pattern=TRAIN_PATTERN)]
    if tf.io.gfile.glob(os.path.join(data, TEST_PATTERN)):
        splits.append(example_gen_pb2.Input.Split(name="test", pattern=TEST_PATTERN))
    return example_gen_pb2.Input(splits=splits)


def eval_config(config: PipelineConfig) -> tfma.EvalConfig:
    """Accuracy must clear an absolute bar and may not fall below the last blessed model's."""
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(
            signature_name=features.SERVING_TF_EXAMPLE,
            label_key=features.LABEL_KEY,
            prediction_key=features.PROBABILITIES_KEY,
            preprocessing_function_names=[features.TRANSFORM_FEATURES])],
        slicing_specs=[tfma.SlicingSpec()],
        metrics_specs=[tfma.MetricsSpec(metrics=[
            tfma.MetricConfig(class_name="ExampleCount"),
            tfma.MetricConfig(
                class_name="SparseCategoricalAccuracy",
                threshold=tfma.MetricThreshold(
                    value_threshold=tfma.GenericValueThreshold(
                        lower_bound={"value": config.min_accuracy}),
                    change_threshold=tfma.GenericChangeThreshold(
                        direction=tfma.MetricDirection.HIGHER_IS_BETTER,
                        absolute={"value": -config.max_accuracy_drop}))),
        ])])


def create_pipeline(config: PipelineConfig, metadata_connection_config=None) -> tfx.dsl.Pipeline:
    example_gen = FileBasedExampleGen(
        input_base=config.data,
        input_config=input_config(config.data),
        output_config=example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(splits=[
            example_gen_pb2.SplitConfig.Split(name="train", hash_buckets=config.train_buckets),
            example_gen_pb2.SplitConfig.Split(name="eval", hash_buckets=config.eval_buckets)])),
        custom_config=ingest.IngestSettings(
            config.max_bad_fraction, config.max_field_chars).to_custom_config(),
        custom_executor_spec=executor_spec.BeamExecutorSpec(ingest.Executor))
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = tfx.components.ImportSchemaGen(
        schema_file=os.path.join(config.schema_dir, "schema.pbtxt"))
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"])
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        preprocessing_fn=PREPROCESSING_FN,
        splits_config=tfx.proto.SplitsConfig(
            analyze=["train"], transform=["train", "eval"]),
        custom_config={"max_tokens": config.max_tokens})
    trainer = tfx.components.Trainer(
        run_fn=RUN_FN,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        train_args=tfx.proto.TrainArgs(splits=["train"]),
        eval_args=tfx.proto.EvalArgs(splits=["eval"]),
        custom_config=config.train_config)
    baseline_resolver = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id("latest_blessed_model_resolver")
    evaluator = tfx.components.Evaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=baseline_resolver.outputs["model"],
        eval_config=eval_config(config))
    pusher = tfx.components.Pusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=config.serving_dir)))
    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=config.pipeline_root,
        components=[example_gen, statistics_gen, schema_gen, example_validator, transform,
                    trainer, baseline_resolver, evaluator, pusher],
        enable_cache=config.enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=config.beam_args)
