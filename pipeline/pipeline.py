"""The agnews TFX pipeline, defined once for every orchestrator.

Built from the TFX modules that `tfx.v1` re-exports, not from `tfx.v1` itself: importing
`tfx.v1` also imports its Google Cloud AI Platform extension (slow to import), which agnews
never uses.
"""

from __future__ import annotations

import dataclasses
import os
import re

import tensorflow_model_analysis as tfma
from tfx.components import (
    BulkInferrer,
    DistributionValidator,
    Evaluator,
    ExampleValidator,
    Pusher,
    StatisticsGen,
    Trainer,
    Transform,
)
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.components.schema_gen.import_schema_gen.component import ImportSchemaGen
from tfx.dsl.components.base import executor_spec
from tfx.dsl.components.common.resolver import Resolver
from tfx.dsl.input_resolution.strategies.latest_artifact_strategy import LatestArtifactStrategy
from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import (
    LatestBlessedModelStrategy,
)
from tfx.orchestration.pipeline import Pipeline
from tfx.proto import (
    bulk_inferrer_pb2,
    example_gen_pb2,
    pusher_pb2,
    range_config_pb2,
    trainer_pb2,
    transform_pb2,
)
from tfx.types import Channel, standard_artifacts

from components import drift, features, ingest, push, rows, servability, validation
from pipeline import node_ids, resolvers
from pipeline.config import TFDS_PREFIX, PipelineConfig
from pipeline.node_ids import BASELINE_NODES, MODEL_NODES, PushNodes

PREPROCESSING_FN = "components.preprocessing.preprocessing_fn"
RUN_FN = "components.trainer.run_fn"
# The driver fingerprints and ExampleGen reads what these match; ingestion then keeps the
# CSV files among them (rows.split_files).
TRAIN_PATTERN = "train*"
TEST_PATTERN = "test*"
SPAN_DIR = "span-{SPAN}"  # TFX's span placeholder: DIR/span-<N>/train.csv[.gz]
SCORE_SPLIT = "score"


@dataclasses.dataclass(frozen=True)
class DataSource:
    """Where ExampleGen reads: its input_base, one input split per source split, the reader,
    and with spans, the span to ingest (None: the newest)."""

    input_base: str
    splits: tuple[str, ...]
    kind: str
    input_config: example_gen_pb2.Input
    range_config: range_config_pb2.RangeConfig | None = None

    @property
    def has_test(self) -> bool:
        return "test" in self.splits


def _source(
    input_base: str,
    patterns: dict[str, str],
    kind: str,
    test_split: bool | None = None,
    span: int | None = None,
) -> DataSource:
    """`span`: the span to ingest (None: the newest, as TFX's driver finds it)."""
    import tensorflow as tf

    def files(split: str) -> tuple[list[str], list[str]]:
        """(the files ingestion reads for `split`, the matched files it passes over)."""
        pattern = patterns[split]
        listed = span if span is not None or "{SPAN}" not in pattern else newest_span(input_base)
        matched = tf.io.gfile.glob(os.path.join(input_base, pattern.replace("{SPAN}", str(listed))))
        return rows.split_files(matched, split) if kind == rows.SOURCE_CSV else (matched, [])

    if test_split is None:
        present = {name: pattern for name, pattern in patterns.items() if files(name)[0]}
        if "train" not in present and (skipped := files("train")[1]):
            # Say so now, naming what was passed over, rather than ingest nothing.
            raise FileNotFoundError(rows.no_split_files_message("train", skipped))
    else:
        present = {
            name: pattern for name, pattern in patterns.items() if name == "train" or test_split
        }
    if "train" not in present:
        raise FileNotFoundError(
            f"No training data {patterns['train']} in {input_base}: --data takes a directory of "
            "canonical AG News CSV files (train.csv or train.csv.gz, optionally test.csv), a "
            "directory of spans (span-<N>/train.csv[.gz]) or tfds:ag_news_subset[:DATA_DIR]."
        )
    range_config = (
        None
        if span is None
        else range_config_pb2.RangeConfig(
            static_range=range_config_pb2.StaticRange(start_span_number=span, end_span_number=span)
        )
    )
    return DataSource(
        input_base,
        tuple(present),
        kind,
        example_gen_pb2.Input(
            splits=[
                example_gen_pb2.Input.Split(name=name, pattern=pattern)
                for name, pattern in present.items()
            ]
        ),
        range_config,
    )


def span_numbers(data: str) -> list[int]:
    """The N of each span-<N> directory in DIR."""
    import tensorflow as tf

    names = (
        os.path.basename(path.rstrip("/"))
        for path in tf.io.gfile.glob(os.path.join(data, "span-*"))
    )
    return sorted(int(name[len("span-") :]) for name in names if re.fullmatch(r"span-\d+", name))


def newest_span(data: str) -> int | None:
    return max(span_numbers(data), default=None)


def has_spans(data: str) -> bool:
    """Whether DIR holds span-<N> directories (then each run ingests one span)."""
    return bool(span_numbers(data))


def resolve_data_source(
    data: str, test_split: bool | None = None, spans: bool | None = None, span: int | None = None
) -> DataSource:
    """`DIR` of train*.csv[.gz] (+ test*.csv[.gz]), `DIR` of span-<N>/ directories of those
    (the newest span, or `span`), or `tfds:NAME[:DATA_DIR]`. With `test_split` (and `spans`)
    given, nothing is listed or downloaded (compiling for storage this machine cannot reach, or
    an Airflow DAG, built at every parse): a TFDS dataset must then be prepared already.

    For TFDS, a dataset not yet prepared under DATA_DIR (default ~/tensorflow_datasets) is
    downloaded and prepared by TFDS itself, which needs internet access.
    """
    if not data.startswith(TFDS_PREFIX):
        if spans is None:
            spans = has_spans(data)
        if span is not None and not spans:
            raise FileNotFoundError(
                f"--span {span} needs a directory of spans (span-<N>/), and {data} has none."
            )
        prefix = os.path.join(SPAN_DIR, "") if spans else ""
        return _source(
            data,
            {"train": prefix + TRAIN_PATTERN, "test": prefix + TEST_PATTERN},
            rows.SOURCE_CSV,
            test_split,
            span if spans else None,
        )
    import tensorflow_datasets as tfds

    name, _, data_dir = data[len(TFDS_PREFIX) :].partition(":")
    builder = tfds.builder(name, data_dir=data_dir or None)
    if test_split is None and not builder.is_prepared():
        builder.download_and_prepare()
    return _source(
        builder.data_dir,
        {split: f"{builder.name}-{split}.*" for split in ("train", "test")},
        rows.SOURCE_TFDS,
        test_split,
    )


def eval_config(config: PipelineConfig, thresholds: bool = True) -> tfma.EvalConfig:
    """Accuracy and the confusion matrix (the report derives per-class precision, recall and F1
    from it), overall and sliced by true class and text length. Overall accuracy must clear an
    absolute bar and may not fall below the last pushed model's (`thresholds=False`: the same
    metrics, reported only).
    The bars hold for the overall slice only: TFMA applies a metric's `threshold` to every
    slice, and slices of a few dozen examples then refused models by noise. Long on purpose:
    one EvalConfig literal (model spec, slices, metrics), read top to bottom."""
    accuracy_gate = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": config.min_accuracy}),
        change_threshold=tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER,
            absolute={"value": -config.max_accuracy_drop},
        ),
    )
    return tfma.EvalConfig(
        model_specs=[
            tfma.ModelSpec(
                # Signatures only: loading the SavedModel as a Keras model per Beam stage made the
                # Evaluator several times slower, for the same metrics.
                model_type=tfma.TF_GENERIC,
                signature_name=features.SERVING_TF_EXAMPLE,
                label_key=features.LABEL_KEY,
                prediction_key=features.PROBABILITIES_KEY,
                preprocessing_function_names=[features.TRANSFORM_FEATURES],
            )
        ],
        slicing_specs=[
            tfma.SlicingSpec(),
            tfma.SlicingSpec(feature_keys=[features.LABEL_KEY]),
            tfma.SlicingSpec(feature_keys=[features.LENGTH_BUCKET_KEY]),
        ],
        metrics_specs=[
            tfma.MetricsSpec(
                metrics=[
                    tfma.MetricConfig(class_name="ExampleCount"),
                    tfma.MetricConfig(class_name="MultiClassConfusionMatrixPlot"),
                    tfma.MetricConfig(
                        class_name="SparseCategoricalAccuracy",
                        per_slice_thresholds=[
                            tfma.PerSliceMetricThreshold(
                                slicing_specs=[tfma.SlicingSpec()], threshold=accuracy_gate
                            )
                        ]
                        if thresholds
                        else [],
                    ),
                ]
            ),
        ],
    )


def create_pipeline(
    config: PipelineConfig,
    metadata_connection_config=None,
    through_transform_only: bool = False,
    span_lineage: bool = True,
) -> Pipeline:
    """The whole pipeline; `through_transform_only` stops after the model's Transform (data
    preparation alone, e.g. to measure or debug ingestion).

    Each run ingests one span (a flat directory is span 0), checks it against the schema and
    against the previous span's statistics (drift), then trains on the window of the newest
    ingested spans, resolved from ML Metadata, starting from the last pushed model.
    `span_lineage=False` (KFP v2, whose IR runs TFX's latest-artifact and latest-blessed-model
    resolvers only): each run trains on its own span, from and against the latest blessed
    model, without the drift gate.

    The model and the baseline are two branches built by `_model_branch`; with
    `config.push_baseline`, the baseline goes through the same gates as the model, against its
    own last push, to `config.baseline_serving_dir`.

    Long on purpose: one paragraph per component (or group of them), in pipeline order, read
    top to bottom.
    """
    if config.push_baseline and not span_lineage:
        raise ValueError(
            "push_baseline needs the resolvers that read ML Metadata's lineage "
            "(agnews run, Airflow): KFP v2's latest-blessed-model resolver cannot tell "
            "the baseline's models from the model's."
        )
    source = resolve_data_source(config.data, config.test_split, config.spans, config.span)
    example_gen = _example_gen(config, source)

    schema_gen = ImportSchemaGen(
        schema_file=os.path.join(config.schema_dir, "schema.pbtxt")
    ).with_id(node_ids.IMPORT_SCHEMA_GEN)

    # With the schema, the label's statistics are categorical (the drift gate compares them).
    statistics_gen = StatisticsGen(
        examples=example_gen.outputs["examples"], schema=schema_gen.outputs["schema"]
    ).with_id(node_ids.STATISTICS_GEN)

    example_validator = ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"]
    ).with_id(node_ids.EXAMPLE_VALIDATOR)
    anomalies_gate = validation.AnomaliesGate(
        anomalies=example_validator.outputs["anomalies"]
    ).with_id(node_ids.ANOMALIES_GATE)
    nodes = [example_gen, schema_gen, statistics_gen, example_validator, anomalies_gate]

    # The window of spans to train on (KFP: the span this run ingested).
    window = example_gen.outputs["examples"]
    if span_lineage:
        drift_nodes = _drift_gate(config, example_gen, statistics_gen)
        span_window = _span_window(
            config,
            example_gen,
            skip_if_trained=(config.enable_cache and not through_transform_only),
        )
        span_window.add_upstream_node(anomalies_gate)
        span_window.add_upstream_node(drift_nodes[-1])
        window = span_window.outputs["examples"]
        nodes += [*drift_nodes, span_window]

    # One branch per trained model: the model, then the linear baseline unless --no-baseline.
    branches = [
        _model_branch(
            config,
            MODEL_NODES,
            config.model,
            window,
            schema_gen,
            anomalies_gate,
            example_gen,
            span_lineage,
            through_transform_only,
        )
    ]
    if len(config.trained_models) > 1 and not through_transform_only:
        branches.append(
            _model_branch(
                config,
                BASELINE_NODES,
                config.trained_models[1],
                window,
                schema_gen,
                anomalies_gate,
                example_gen,
                span_lineage,
            )
        )
    model, baseline = branches[0], branches[1] if len(branches) > 1 else None
    nodes += [node for branch in branches for node in branch.nodes]
    if through_transform_only:
        return _pipeline(config, nodes, metadata_connection_config)

    # Holdout (and test, when given) are reported on, never used to bless or to train: the
    # eval split has steered early stopping, so its accuracy is biased upwards. The baseline
    # model, when trained, is TFMA's baseline here: both are scored on the same examples.
    for split in (features.HOLDOUT_SPLIT, *([features.TEST_SPLIT] if source.has_test else [])):
        nodes.append(
            Evaluator(
                examples=window,
                model=model.trainer.outputs["model"],
                baseline_model=baseline.trainer.outputs["model"] if baseline else None,
                example_splits=[split],
                eval_config=eval_config(config, thresholds=False),
            ).with_id(node_ids.report_evaluator(split))
        )

    nodes += _scoring(config, model.trainer, model.evaluator)
    return _pipeline(config, nodes, metadata_connection_config)


def _example_gen(config: PipelineConfig, source: DataSource) -> FileBasedExampleGen:
    """Our ingestion executor (components.ingest) in TFX's FileBasedExampleGen: the train
    files hash-split into train, eval and holdout by the config's buckets."""
    splits = (
        (features.TRAIN_SPLIT, config.train_buckets),
        (features.EVAL_SPLIT, config.eval_buckets),
        (features.HOLDOUT_SPLIT, config.holdout_buckets),
    )
    return FileBasedExampleGen(
        input_base=source.input_base,
        input_config=source.input_config,
        range_config=source.range_config,
        output_config=example_gen_pb2.Output(
            split_config=example_gen_pb2.SplitConfig(
                splits=[
                    example_gen_pb2.SplitConfig.Split(name=name, hash_buckets=buckets)
                    for name, buckets in splits
                ]
            )
        ),
        custom_config=ingest.custom_config(
            rows.IngestSettings(config.max_bad_fraction, config.max_field_chars, source.kind)
        ),
        custom_executor_spec=executor_spec.BeamExecutorSpec(ingest.Executor),
    ).with_id(node_ids.EXAMPLE_GEN)


def _span_window(config: PipelineConfig, example_gen, skip_if_trained: bool) -> Resolver:
    """The `config.window` newest ingested spans, from ML Metadata; nothing when every pushed
    model (the model's, and the baseline's with push_baseline) was trained on that window."""
    pushed_trainers = {"model": MODEL_NODES.trainer}
    if config.push_baseline:
        pushed_trainers["baseline_model"] = BASELINE_NODES.trainer
    return Resolver(
        strategy_class=resolvers.SpanWindowStrategy,
        config={
            "num_spans": config.window,
            "last_span": -1 if config.span is None else config.span,
            "skip_if_trained": skip_if_trained,
        },
        examples=Channel(type=standard_artifacts.Examples, producer_component_id=example_gen.id),
        **{
            key: Channel(type=standard_artifacts.Model, producer_component_id=trainer_id)
            for key, trainer_id in pushed_trainers.items()
        },
    ).with_id(node_ids.SPAN_WINDOW)


@dataclasses.dataclass
class ModelBranch:
    """The nodes of one trained model, in pipeline order, and the two later nodes read."""

    nodes: list
    trainer: Trainer | None = None
    evaluator: Evaluator | None = None


def _model_branch(
    config: PipelineConfig,
    ids: PushNodes,
    model_name: str,
    window,
    schema_gen,
    anomalies_gate,
    example_gen,
    span_lineage: bool,
    through_transform_only: bool = False,
) -> ModelBranch:
    """Transform (reading its own analyzer cache) and Trainer for `model_name`, then, when the
    model is pushed (always the model; the baseline with push_baseline), its last push (warm
    start and change threshold), Evaluator, servability gate and Pusher.

    One Transform per model: the baseline's adds the n-gram features, which the BiLSTM's serving
    graph then does not have to carry or compute. With the cache, a span already in an earlier
    window is not analysed again (not with --no-cache: then every analyzer runs over the whole
    window). Long on purpose: one paragraph per component, in pipeline order."""
    cache = (
        Resolver(
            # KFP v2's compiler compiles TFX's own strategies only.
            strategy_class=resolvers.LatestOrNoneStrategy
            if span_lineage
            else LatestArtifactStrategy,
            cache=Channel(
                type=standard_artifacts.TransformCache, producer_component_id=ids.transform
            ),
        ).with_id(node_ids.transform_cache(ids.transform))
        if config.enable_cache
        else None
    )
    transform = Transform(
        examples=window,
        schema=schema_gen.outputs["schema"],
        preprocessing_fn=PREPROCESSING_FN,
        analyzer_cache=cache.outputs["cache"] if cache else None,
        disable_analyzer_cache=cache is None,
        # Nothing reads Transform's pre- and post-transform statistics.
        disable_statistics=True,
        splits_config=transform_pb2.SplitsConfig(
            analyze=[features.TRAIN_SPLIT], transform=[features.TRAIN_SPLIT, features.EVAL_SPLIT]
        ),
        custom_config=config.transform_config(model_name),
    ).with_id(ids.transform)
    transform.add_upstream_node(anomalies_gate)
    nodes = [*([cache] if cache else []), transform]
    if through_transform_only:
        return ModelBranch(nodes)

    pushed = ids == MODEL_NODES or config.push_baseline
    last_pushed = _last_pushed(ids, span_lineage) if pushed else None
    trainer = Trainer(
        run_fn=RUN_FN,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        base_model=last_pushed.outputs["model"] if last_pushed and config.warm_start else None,
        train_args=trainer_pb2.TrainArgs(splits=[features.TRAIN_SPLIT]),
        eval_args=trainer_pb2.EvalArgs(splits=[features.EVAL_SPLIT]),
        custom_config={**config.train_config, "model": model_name},
    ).with_id(ids.trainer)
    if not last_pushed:
        return ModelBranch([*nodes, trainer], trainer)
    serving_dir = config.serving_dir if ids == MODEL_NODES else config.baseline_serving_dir
    gate = _push_gate(config, ids, trainer, last_pushed, window, example_gen, serving_dir)
    return ModelBranch([*nodes, last_pushed, trainer, *gate], trainer, gate[0])


def _last_pushed(nodes: PushNodes, span_lineage: bool) -> Resolver:
    """The model of the newest push of `nodes.trainer`'s models (a blessed model the
    servability gate refused was never served): the baseline of the change threshold and the
    warm start. Only that Trainer's models: else, once the linear baseline is pushed too, the
    BiLSTM would be compared with it and started from it. Without `span_lineage` (KFP, which
    drops the channels' producer filter: see create_pipeline), the latest blessed model."""
    if not span_lineage:
        return Resolver(
            strategy_class=LatestBlessedModelStrategy,
            model=Channel(type=standard_artifacts.Model),
            model_blessing=Channel(type=standard_artifacts.ModelBlessing),
        ).with_id(nodes.last_pushed)
    return Resolver(
        strategy_class=resolvers.LatestPushedModelStrategy,
        model=Channel(type=standard_artifacts.Model, producer_component_id=nodes.trainer),
    ).with_id(nodes.last_pushed)


def _push_gate(
    config: PipelineConfig,
    nodes: PushNodes,
    trainer,
    last_pushed: Resolver,
    window,
    example_gen,
    serving_dir: str,
) -> list:
    """[Evaluator, servability gate, Pusher] of one Trainer's model. The Evaluator blesses it on
    the eval split by eval_config's bars, against the model `last_pushed` resolves; the model must
    also load and answer in a TensorFlow-only process; Pusher pushes the gate's copy, which
    carries TF Serving's warmup requests, to `serving_dir` when both blessed it."""
    evaluator = Evaluator(
        examples=window,
        model=trainer.outputs["model"],
        baseline_model=last_pushed.outputs["model"],
        eval_config=eval_config(config),
    ).with_id(nodes.evaluator)
    servability_gate = servability.ServabilityGate(
        model=trainer.outputs["model"], examples=example_gen.outputs["examples"]
    ).with_id(nodes.servability_gate)
    pusher = Pusher(
        model_blessing=evaluator.outputs["blessing"],
        infra_blessing=servability_gate.outputs["blessing"],
        push_destination=pusher_pb2.PushDestination(
            filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=serving_dir)
        ),
    ).with_id(nodes.pusher)
    pusher.executor_spec = executor_spec.ExecutorClassSpec(push.Executor)  # see components/push.py
    return [evaluator, servability_gate, pusher]


def _drift_gate(config: PipelineConfig, example_gen, statistics_gen) -> list:
    """DistributionValidator comparing the new span's statistics with the previous span's, and
    the gate that stops the run on drift. The first span has no previous span: the validator
    then blesses it unchecked and the gate passes, saying so."""
    previous_statistics = Resolver(
        strategy_class=resolvers.PreviousSpanStatisticsStrategy,
        statistics=Channel(
            type=standard_artifacts.ExampleStatistics, producer_component_id=statistics_gen.id
        ),
        examples=example_gen.outputs["examples"],
    ).with_id(node_ids.PREVIOUS_SPAN_STATISTICS)
    baseline = previous_statistics.outputs["statistics"].as_optional()
    distribution_validator = DistributionValidator(
        statistics=statistics_gen.outputs["statistics"],
        baseline_statistics=baseline,
        **drift.validator_settings(config.schema_dir),
    ).with_id(node_ids.DISTRIBUTION_VALIDATOR)
    drift_gate = drift.DriftGate(
        anomalies=distribution_validator.outputs["anomalies"],
        statistics=statistics_gen.outputs["statistics"],
        baseline_statistics=baseline,
        accept_drift=int(config.accept_drift),
        **drift.gate_settings(config.schema_dir),
    ).with_id(node_ids.DRIFT_GATE)
    return [previous_statistics, distribution_validator, drift_gate]


def _scoring(config: PipelineConfig, trainer, evaluator) -> list:
    """With `config.score`: every file in that directory read by ingestion's own rules (its own
    ExampleGen, scoring mode) and scored by BulkInferrer with the Trainer's model, only when the
    Evaluator blessed it (BulkInferrer skips an unblessed model and writes nothing)."""
    if not config.score:
        return []
    import tensorflow as tf

    # Listed only where `data` is (a local run: test_split unknown), as resolve_data_source does.
    if config.test_split is None and not tf.io.gfile.glob(os.path.join(config.score, "*")):
        raise FileNotFoundError(
            f"No files to score in {config.score}: --score takes a directory of "
            "CSV (labelled or not) or TFRecord files."
        )
    score_example_gen = FileBasedExampleGen(
        input_base=config.score,
        input_config=example_gen_pb2.Input(
            splits=[example_gen_pb2.Input.Split(name=SCORE_SPLIT, pattern="*")]
        ),
        custom_config=ingest.custom_config(
            rows.IngestSettings(
                config.max_bad_fraction, config.max_field_chars, rows.SOURCE_CSV, labelled=False
            )
        ),
        custom_executor_spec=executor_spec.BeamExecutorSpec(ingest.Executor),
    ).with_id(node_ids.SCORE_EXAMPLE_GEN)
    bulk_inferrer = BulkInferrer(
        examples=score_example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        data_spec=bulk_inferrer_pb2.DataSpec(),
        model_spec=bulk_inferrer_pb2.ModelSpec(model_signature_name=[features.BATCH_SCORING]),
    ).with_id(node_ids.BULK_INFERRER)
    bulk_inferrer.executor_spec = executor_spec.BeamExecutorSpec(push.BulkInferrerExecutor)
    return [score_example_gen, bulk_inferrer]


def _pipeline(config: PipelineConfig, components, metadata_connection_config) -> Pipeline:
    return Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=config.pipeline_root,
        components=components,
        enable_cache=config.enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=config.beam_args,
    )
