"""One configuration object for every runner; CLI flags override its defaults.

Imports nothing heavy: `agnews --help` and `--print-config` answer without TensorFlow.
"""

from __future__ import annotations

import dataclasses
import json
import os
import posixpath
from pathlib import Path

from components import features, settings
from pipeline import metadata_connection

PROJECT_DIR = Path(__file__).resolve().parents[1]
SAMPLE_DATA_DIR = PROJECT_DIR / "data" / "ag_news_sample"
SCHEMA_DIR = PROJECT_DIR / "schemas"
MONITOR_THRESHOLDS_FILE = SCHEMA_DIR / "monitor.ini"  # `agnews monitor`'s, beside the schema
TFDS_PREFIX = "tfds:"
# The registry aliases a new version may get (agnews.serving.model_config's labels).
NEW_VERSION_ALIASES = ("canary", "stable")
# The settings that name files or directories: load_config makes them absolute.
PATH_FIELDS = (
    "data",
    "pipeline_root",
    "metadata_path",
    "serving_dir",
    "schema_dir",
    "score",
    "monitor_logs",
    "monitor_export_span",
)


@dataclasses.dataclass
class PipelineConfig:
    pipeline_name: str = "agnews"
    data: str = str(SAMPLE_DATA_DIR)
    pipeline_root: str = "artifacts/pipeline"
    metadata_path: str = "artifacts/metadata.sqlite"
    # ML Metadata on a MySQL/MariaDB server instead of the sqlite file at metadata_path
    # (mysql://USER@HOST[:PORT]/DATABASE; the password never here: see metadata_connection).
    # The run directory (report, logs) stays metadata_path's directory.
    metadata_uri: str | None = None
    serving_dir: str = "artifacts/serving/agnews"
    schema_dir: str = str(SCHEMA_DIR)
    # Whether `data` has test files: None looks (local runs); compiling for a cluster whose
    # storage this machine cannot list says it (True/False).
    test_split: bool | None = None
    # Data in spans (DIR/span-<N>/train.csv[.gz]; None: look, as for test_split). Each run
    # ingests the newest span, or `span` (a backfill), and trains on the `window` newest
    # ingested spans (up to `span`), found in ML Metadata.
    spans: bool | None = None
    span: int | None = None
    window: int = 3
    # Drift gate: a span whose statistics drifted from the previous span's stops the run,
    # unless accepted (a deliberate decision, logged).
    accept_drift: bool = False
    # Warm start: the Trainer starts from the last pushed model when its kind matches.
    warm_start: bool = True
    # Airflow's schedule for the DAG (a cron expression or preset such as "@daily"; None: run
    # when triggered). On Kubeflow, a recurring run is set in KFP itself.
    schedule: str | None = None
    # Ingestion: how the train files' rows are hashed into train / eval / holdout (in tenths).
    train_buckets: int = 8
    eval_buckets: int = 1
    holdout_buckets: int = 1
    max_bad_fraction: float = settings.DEFAULT_MAX_BAD_FRACTION
    max_field_chars: int = settings.DEFAULT_MAX_FIELD_CHARS
    # Transform and training.
    max_tokens: int = features.DEFAULT_MAX_TOKENS
    text: str = features.TEXT_TITLE_AND_DESCRIPTION
    model: str = settings.DEFAULT_MODEL
    mixed_precision: bool = False
    epochs: int = settings.DEFAULT_EPOCHS
    patience: int = settings.DEFAULT_PATIENCE
    batch_size: int = settings.DEFAULT_BATCH_SIZE
    learning_rate: float = settings.DEFAULT_LEARNING_RATE
    embedding_dropout: float = settings.DEFAULT_EMBEDDING_DROPOUT
    baseline: bool = True  # also train settings.BASELINE_MODEL and report it on holdout
    # Also push the baseline, through the same gates as the model, to baseline_serving_dir (so
    # that one model server can serve both).
    push_baseline: bool = False
    # Push gate. 0.60 blesses a model trained on the 3,000-row embedded sample (eval
    # accuracy about 0.8); for the full training set use --min-accuracy 0.88 or so.
    min_accuracy: float = 0.60
    max_accuracy_drop: float = 0.01
    # The registry alias a pushed version gets (`agnews models`): "canary" (a share of traffic
    # until promoted) or "stable" (all traffic at once). The first version is always stable.
    new_version_alias: str = "canary"
    beam_args: list[str] = dataclasses.field(default_factory=list)
    enable_cache: bool = True
    # Batch scoring: a directory of rows to score (CSV, labelled or not, or TFRecords of
    # tf.Examples) with the blessed model (BulkInferrer); None scores nothing.
    score: str | None = None
    # The monitoring DAG (airflow_monitor_dag.py) runs `agnews monitor` over the server's
    # --log-requests directory on its own schedule; None: no monitoring DAG. An alert is also
    # POSTed to the webhook; with export_span each window's requests become a span there.
    monitor_logs: str | None = None
    monitor_schedule: str = "@hourly"
    monitor_webhook: str | None = None
    monitor_export_span: str | None = None

    def __post_init__(self):
        """Refuses a metadata_uri that names no server, an unknown registry alias, and a baseline
        push that could push nothing (no baseline is trained) or could push to no directory of
        its own."""
        if self.metadata_uri is not None:
            metadata_connection.required_server(self.metadata_uri)  # a ValueError if not
        if self.new_version_alias not in NEW_VERSION_ALIASES:
            raise ValueError(
                f"new_version_alias must be one of {', '.join(NEW_VERSION_ALIASES)}, not "
                f"{self.new_version_alias!r}"
            )
        if not self.push_baseline:
            return
        if settings.BASELINE_MODEL not in self.trained_models[1:]:
            raise ValueError(
                f"push_baseline (--push-baseline) needs the {settings.BASELINE_MODEL} baseline "
                f"trained beside another model, and this configuration trains {self.model} alone "
                f"({'--no-baseline' if not self.baseline else 'it is the baseline itself'})."
            )
        if self._serving_parent.endswith(
            ":"
        ) or self.baseline_serving_dir == self.serving_dir.rstrip("/"):
            raise ValueError(
                f"push_baseline (--push-baseline) pushes the baseline to "
                f"{settings.BASELINE_SERVING_MODEL_NAME}/ beside --serving-dir, which "
                f"{self.serving_dir} does not leave room for: use a --serving-dir inside a folder "
                f"(e.g. gs://bucket/serving/agnews), not named "
                f"{settings.BASELINE_SERVING_MODEL_NAME}."
            )

    def transform_config(self, model: str) -> dict:
        """What preprocessing_fn reads from its custom_config, for `model`'s Transform."""
        return {
            "max_tokens": self.max_tokens,
            "text": self.text,
            "ngrams": model in settings.NGRAM_MODELS,
        }

    @property
    def metadata_address(self) -> str:
        """Where ML Metadata is: metadata_uri's server, else the sqlite file at metadata_path."""
        return self.metadata_uri or self.metadata_path

    @property
    def run_dir(self) -> str:
        """Where a local run keeps what is not an artifact: the report, logs, the lock's file."""
        return os.path.dirname(os.path.abspath(self.metadata_path))

    @property
    def baseline_serving_dir(self) -> str:
        """Where push_baseline pushes: beside serving_dir, named as the model server calls it
        (a path or a URL such as gs://, as serving_dir is)."""
        return posixpath.join(self._serving_parent, settings.BASELINE_SERVING_MODEL_NAME)

    @property
    def _serving_parent(self) -> str:
        """The folder holding serving_dir ("gs:" for a bucket root, which has none)."""
        return posixpath.dirname(self.serving_dir.rstrip("/"))

    @property
    def trained_models(self) -> tuple[str, ...]:
        """The chosen model, then the baseline when it is on and a different model."""
        with_baseline = self.baseline and self.model != settings.BASELINE_MODEL
        return (self.model, settings.BASELINE_MODEL) if with_baseline else (self.model,)

    @property
    def train_config(self) -> dict:
        """What run_fn reads from fn_args.custom_config."""
        return {
            "model": self.model,
            "epochs": self.epochs,
            "patience": self.patience,
            "batch_size": self.batch_size,
            "learning_rate": self.learning_rate,
            "embedding_dropout": self.embedding_dropout,
            "mixed_precision": self.mixed_precision,
            "warm_start": self.warm_start,
        }

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)


def load_config(path: str | None = None, **overrides) -> PipelineConfig:
    """Defaults, then the JSON file at `path` (if any), then `overrides` (e.g. CLI flags).

    Paths come out absolute, so that the config means the same files to every process that
    reads it (Airflow's scheduler and workers each have their own working directory): a relative
    path in the file is taken from the file's directory, one from a flag or a default from the
    working directory.
    """
    values = json.loads(Path(path).read_text()) if path else {}
    known = {f.name for f in dataclasses.fields(PipelineConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(
            f"Unknown settings in {path}: {', '.join(unknown)}; known: {', '.join(sorted(known))}."
        )
    if path:
        file_dir = os.path.dirname(os.path.abspath(path))
        values.update(
            {k: _absolute(v, file_dir) for k, v in values.items() if k in PATH_FIELDS and v}
        )
    values.update(overrides)
    config = PipelineConfig(**values)
    return dataclasses.replace(
        config,
        **{
            k: _absolute(getattr(config, k), os.getcwd()) for k in PATH_FIELDS if getattr(config, k)
        },
    )


DEPLOYED_CONFIG_VARIABLE = "AGNEWS_CONFIG"  # the config file's path, for the Airflow DAGs


def load_deployed_config() -> PipelineConfig:
    """The config at the absolute path in AGNEWS_CONFIG, as the Airflow DAG files read it: each
    Airflow process (scheduler, workers) has its own working directory."""
    path = os.environ.get(DEPLOYED_CONFIG_VARIABLE, "")
    if not os.path.isabs(path):
        raise ValueError(
            f"{DEPLOYED_CONFIG_VARIABLE} must be the absolute path of a config file (agnews run "
            f"--print-config > FILE), not {path!r}: each Airflow process has its own "
            "working directory."
        )
    return load_config(path)


def _absolute(value: str, base: str) -> str:
    """`value` with a relative path taken from `base`. URLs (gs://...) are kept; of a
    `tfds:NAME[:DATA_DIR]` source only DATA_DIR is a path."""
    if "://" in value:
        return value
    if value.startswith(TFDS_PREFIX):
        name, colon, data_dir = value[len(TFDS_PREFIX) :].partition(":")
        return f"{TFDS_PREFIX}{name}{colon}{_absolute(data_dir, base) if data_dir else ''}"
    return os.path.normpath(os.path.join(base, os.path.expanduser(value)))
