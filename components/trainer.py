"""Trainer's run_fn: trains the chosen model on Transform's output and exports it for serving."""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import shutil
import tempfile
import time

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from absl import logging
from tfx.components.trainer.fn_args_utils import FnArgs
from tfx_bsl.public import tfxio

from components import features, model, signatures, warm_start
from components.artifacts import (
    EPOCH_SECONDS_KEY,
    HISTORY_FILE_NAME,
    TRAINING_BACKUP_DIR_NAME,
    WARM_START_FILE_NAME,
)
from components.settings import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_EMBEDDING_DROPOUT,
    DEFAULT_EPOCHS,
    DEFAULT_LEARNING_RATE,
    DEFAULT_MODEL,
    DEFAULT_PATIENCE,
)

# Learning rate x this after every epoch that does not lower eval loss.
LEARNING_RATE_DECAY_ON_PLATEAU = 0.3
SEED = 42
# Rows per shuffle buffer: all of AG News's 120,000 training rows, so an epoch is a full shuffle.
SHUFFLE_BUFFER = 131_072
_READ_BATCH = 256
# The name under which Keras's BackupAndRestore checkpoints the last finished epoch.
_SAVED_EPOCH = "ckpt_saved_epoch/"
# Token-count edges of the length buckets: AG News title + description is mostly 20-60 tokens.
BUCKET_BOUNDARIES = (12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 56, 64, 80, 96, 128)


class ReplicaLostError(RuntimeError):
    """A training replica stopped answering during multi-worker training."""


class ClusterSetupError(RuntimeError):
    """Multi-worker training was asked for in a process where TensorFlow already runs."""


def cluster_size() -> int:
    """How many training processes TF_CONFIG names (1 without TF_CONFIG)."""
    cluster = json.loads(os.environ.get("TF_CONFIG") or "{}").get("cluster", {})
    return max(1, len(cluster.get("worker", [])) + len(cluster.get("chief", [])))


@functools.cache
def distribution_strategy() -> tf.distribute.Strategy:
    """The process's one strategy, settled by its first call, which must come before any
    TensorFlow op: MultiWorkerMirroredStrategy when TF_CONFIG names several workers (Vertex AI,
    a Kubeflow TFJob), else MirroredStrategy over every visible GPU, or over the logical CPU
    devices when there is none (one, unless the process split the CPU, TF's stand-in for
    several GPUs). GPU memory growth comes from TF_FORCE_GPU_ALLOW_GROWTH (set by `components`
    before TensorFlow starts): setting it here would raise once TensorFlow runs, as it does
    under LocalDagRunner before the Trainer."""
    if cluster_size() > 1:
        try:
            return tf.distribute.MultiWorkerMirroredStrategy()
        except RuntimeError as error:  # "Collective ops must be configured at program startup"
            raise ClusterSetupError(
                f"TF_CONFIG names {cluster_size()} training processes, but TensorFlow already "
                "ran in this one, so it cannot join them. Run the Trainer in a process of its "
                "own per worker (Vertex AI, a Kubeflow TFJob), or unset TF_CONFIG to train "
                f"here ({error})."
            ) from None
    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    return tf.distribute.MirroredStrategy([device.name for device in devices])


def _kind(strategy: tf.distribute.Strategy) -> str:
    """The strategy's public name (MultiWorkerMirroredStrategy's class is named otherwise)."""
    return (
        "MultiWorkerMirroredStrategy"
        if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
        else type(strategy).__name__
    )


def read_examples(
    file_pattern,
    data_accessor,
    tf_transform_output: tft.TFTransformOutput,
    keys: tuple[str, ...] = (features.TOKEN_IDS_KEY,),
) -> tf.data.Dataset:
    """Transformed examples one by one, in file order: ({key: values [length] for the model's
    keys}, label). Training shuffles them per epoch (training_epochs)."""
    dataset = data_accessor.tf_dataset_factory(
        file_pattern,
        tfxio.TensorFlowDatasetOptions(
            batch_size=_READ_BATCH, label_key=features.LABEL_KEY, num_epochs=1, shuffle=False
        ),
        tf_transform_output.transformed_metadata.schema,
    )
    dataset = dataset.map(lambda batch, label: ({k: batch[k] for k in keys}, label)).unbatch()
    # An unbatched row keeps its read batch's dense shape (the longest of 256 rows): shrinking
    # it to the row's own values keeps that padding out of the length buckets.
    return dataset.map(
        lambda row, label: (
            {k: tf.sparse.to_dense(tf.sparse.reset_shape(v)) for k, v in row.items()},
            label,
        ),
        num_parallel_calls=tf.data.AUTOTUNE,
    )


def training_epochs(
    examples: tf.data.Dataset, batch_size: int, first_epoch: int, epochs: int
) -> tuple[tf.data.Dataset, int]:
    """The batches of epochs first_epoch..epochs-1 in one dataset, and how many each epoch has.

    Epoch e's rows come in an order drawn from (SEED, e) alone, not from how many epochs this
    process ran before: a Trainer resumed at epoch k (BackupAndRestore) reads the batches the
    uninterrupted one read at epoch k. (A reshuffle per iteration restarts with the process, so
    a resumed Trainer read epoch 0's order again and trained another model.) The rows are read
    once and kept in memory, so that later epochs do not parse them again."""
    examples = examples.cache()

    def epoch_batches(epoch):
        rows = examples.shuffle(SHUFFLE_BUFFER, seed=SEED + epoch, reshuffle_each_iteration=False)
        return _batches(rows, batch_size, bucketing=True)

    # Length buckets flush their partial batches at the end of each epoch, so every epoch has
    # as many batches as the rows in file order make (this pass also fills the cache).
    steps = int(
        _batches(examples, batch_size, bucketing=True)
        .with_options(_without_autotuning_model())
        .reduce(np.int64(0), lambda count, _: count + 1)
    )
    dataset = tf.data.Dataset.range(first_epoch, epochs).flat_map(epoch_batches)
    return _for_replicas(dataset), steps


def batch_examples(
    dataset: tf.data.Dataset, batch_size: int, bucketing: bool = True
) -> tf.data.Dataset:
    """Right-padded batches (padding 0 for every feature: PAD_ID for token ids, weight 0 for
    n-grams); with bucketing, rows of similar length (in tokens, else in n-grams) share a
    batch so the LSTMs spend little time on padding."""
    return _for_replicas(_batches(dataset, batch_size, bucketing))


def _batches(dataset: tf.data.Dataset, batch_size: int, bucketing: bool) -> tf.data.Dataset:
    row_spec, _ = dataset.element_spec
    padding = (
        {k: tf.constant(features.PAD_ID, spec.dtype) for k, spec in row_spec.items()},
        tf.constant(0, tf.int64),
    )
    if not bucketing:
        return dataset.padded_batch(batch_size, padding_values=padding)
    length_key = (
        features.TOKEN_IDS_KEY if features.TOKEN_IDS_KEY in row_spec else features.NGRAM_IDS_KEY
    )
    return dataset.bucket_by_sequence_length(
        element_length_func=lambda row, label: tf.shape(row[length_key])[0],
        bucket_boundaries=list(BUCKET_BOUNDARIES),
        bucket_batch_sizes=[batch_size] * (len(BUCKET_BOUNDARIES) + 1),
        padding_values=padding,
    )


def _for_replicas(batches: tf.data.Dataset) -> tf.data.Dataset:
    """Across N workers, each takes its 1/N of every global batch: Transform writes fewer files
    than there may be workers, so the default sharding by file cannot split them."""
    options = _without_autotuning_model()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return batches.prefetch(tf.data.AUTOTUNE).with_options(options)


def _without_autotuning_model() -> tf.data.Options:
    """Options for every pipeline the Trainer reads, which leave out tf.data's autotuning model.

    Deleting an iterator joins that model's thread. An early-stopped Trainer leaves its
    iterator with epochs unread, and a garbage collection during the export deleted it: the
    Trainer stood still for 22-35 s (py-spy: the iterator's destructor waiting on that thread)
    in 4 of 5 runs of `agnews run`; since, 1 of 16 lost ~38 s, where is not known
    (bench/README.md; the per-device iterators a MirroredStrategy adds keep their own model).
    Without it, prefetch(AUTOTUNE) grows its buffer by the prefetch op's own rule, AUTOTUNE
    parallelism is fixed at the cores (up to 16), and the rewrites only the model drives (map
    parallelization, injected prefetches) are off. The epochs were ~4% slower for it
    (bench/README.md, bench/trainer_pace.py run with and without the model)."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return options


def padding_fraction(batches: tf.data.Dataset) -> float:
    """Padded positions / all positions of the token ids over one pass of batches."""
    padded = total = 0
    for row, _ in batches:
        token_ids = row[features.TOKEN_IDS_KEY]
        padded += int(tf.reduce_sum(tf.cast(token_ids == features.PAD_ID, tf.int64)))
        total += int(tf.size(token_ids))
    return padded / max(total, 1)


class EpochTimer(tf.keras.callbacks.Callback):
    """Each epoch's wall seconds, validation included: what the run's profile compares the
    whole run with (the share of a run that is training)."""

    def __init__(self):
        super().__init__()
        self.seconds: list[float] = []
        self._started = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._started)


class JudgesBackup(tf.keras.callbacks.Callback):
    """What Keras's BackupAndRestore leaves out: the state of the callbacks that judge each
    epoch (EarlyStopping's best eval loss, epochs without improvement and best weights;
    ReduceLROnPlateau's best and its count). Without it a resumed Trainer forgets the epochs
    before its restart, so it cuts the learning rate and stops at other epochs than the
    uninterrupted run would, and trains another model (measured with bench/multiworker.py).

    Listed after the judges (it saves what their epoch end decided, and restores their state
    after their own reset when training begins) and before BackupAndRestore (an epoch's state is
    written before Keras's checkpoint of it, so the checkpoint a restart resumes from always
    has its state), one file per epoch. Restored when training begins, not when its first
    epoch does: a Trainer stopped after the last epoch's checkpoint runs no epoch on restart,
    and EarlyStopping's end of training must still put its best weights back."""

    # The attributes of each judge that carry from one epoch to the next.
    CARRIED = {
        tf.keras.callbacks.EarlyStopping: ("wait", "best", "best_epoch"),
        tf.keras.callbacks.ReduceLROnPlateau: ("wait", "best", "cooldown_counter"),
    }

    def __init__(self, directory: str, judges: list[tf.keras.callbacks.Callback], write: bool):
        super().__init__()
        self._directory, self._judges, self._write = directory, judges, write

    def _path(self, epoch: int, suffix: str) -> str:
        return os.path.join(self._directory, f"judges-epoch-{epoch}.{suffix}")

    def on_train_begin(self, logs=None):
        finished = resumed_epoch(self._directory) - 1
        if finished < 0 or not tf.io.gfile.exists(self._path(finished, "json")):
            return
        with tf.io.gfile.GFile(self._path(finished, "json")) as handle:
            states = json.load(handle)
        for judge, state in zip(self._judges, states, strict=True):
            for name, value in state.items():
                setattr(judge, name, value)
            if getattr(judge, "restore_best_weights", False):
                with tf.io.gfile.GFile(self._path(finished, "npz"), "rb") as handle:
                    saved = np.load(io.BytesIO(handle.read()))
                    judge.best_weights = [saved[f"w{i}"] for i in range(len(saved.files))]

    def on_epoch_end(self, epoch, logs=None):
        if not self._write:
            return
        tf.io.gfile.makedirs(self._directory)
        states = [
            {name: _plain(getattr(judge, name)) for name in self.CARRIED[type(judge)]}
            for judge in self._judges
        ]
        for judge in self._judges:
            if getattr(judge, "restore_best_weights", False) and judge.best_weights is not None:
                buffer = io.BytesIO()
                np.savez(buffer, **{f"w{i}": w for i, w in enumerate(judge.best_weights)})
                with tf.io.gfile.GFile(self._path(epoch, "npz"), "wb") as handle:
                    handle.write(buffer.getvalue())
        with tf.io.gfile.GFile(self._path(epoch, "json"), "w") as handle:
            json.dump(states, handle)


def _plain(value):
    """A judge's number as JSON takes it (numpy scalars become Python ones; inf stays inf)."""
    return value.item() if hasattr(value, "item") else value


def resumed_epoch(backup_dir: str) -> int:
    """The epoch a Trainer restarted with BackupAndRestore's state in backup_dir begins at
    (0 without one): the epoch after the last one Keras's checkpoint recorded as finished. Keras
    reads the same checkpoint to skip the epochs before it; training_epochs needs it first."""
    # Keras keeps the chief's checkpoint in backup_dir/chief (other workers' scratch beside it).
    checkpoint = tf.train.latest_checkpoint(os.path.join(backup_dir, "chief"))
    if not checkpoint:
        return 0
    names = [n for n, _ in tf.train.list_variables(checkpoint) if n.startswith(_SAVED_EPOCH)]
    if len(names) != 1:
        raise RuntimeError(
            f"the training backup {checkpoint} holds no {_SAVED_EPOCH!r} (this Keras names its "
            f"epoch otherwise): delete {backup_dir} to train again from the first epoch"
        )
    # Keras writes -1 there before the first epoch ends: that is epoch 0 too.
    return int(tf.train.load_variable(checkpoint, names[0])) + 1


class EpochSeededDropout(tf.keras.callbacks.Callback):
    """Reseeds every dropout layer's tf.random.Generator from (seed, its index, the epoch) as
    each epoch begins, so that epoch e's dropout masks depend on e alone, as its batches do
    (training_epochs): a resumed Trainer draws what the uninterrupted one drew. The generator's
    state is not in Keras's checkpoint, and TF1-style random ops restart with the process.

    Keras keeps the generator in private attributes (tf_keras has no public way to reseed a
    layer): a dropout layer without one (TF1 random ops, or renamed attributes) is an error
    when training begins, not a resume that silently trains another model."""

    def __init__(self, seed: int):
        super().__init__()
        self._seed = seed
        self._generators: list[tuple[int, tf.random.Generator]] = []

    def on_train_begin(self, logs=None):
        self._generators = []
        for index, layer in enumerate(self.model.submodules):
            if not isinstance(layer, tf.keras.layers.Dropout):
                continue
            generator = getattr(getattr(layer, "_random_generator", None), "_generator", None)
            if not isinstance(generator, tf.random.Generator):
                raise TypeError(
                    f"dropout layer {layer.name!r} draws no masks from a tf.random.Generator, "
                    "so a resumed Trainer cannot draw the masks it drew before: build it with "
                    "force_generator=True (as model.build_model does)"
                )
            self._generators.append((index, generator))

    def on_epoch_begin(self, epoch, logs=None):
        for index, generator in self._generators:
            generator.reset_from_seed([self._seed, index, epoch])


def fit(
    classifier: tf.keras.Model,
    train: tf.data.Dataset,
    evaluation: tf.data.Dataset,
    epochs: int,
    patience: int = DEFAULT_PATIENCE,
    callbacks=(),
    backup: tuple[str, bool] | None = None,
    steps_per_epoch: int | None = None,
    seed: int = SEED,
) -> tf.keras.callbacks.History:
    """Trains until eval loss stops improving for `patience` epochs, keeping the best weights;
    each epoch without improvement also cuts the learning rate. `backup` (directory, whether
    this process writes it): where JudgesBackup keeps the judges' state for a restart.
    `steps_per_epoch`: batches per epoch when `train` holds every epoch (training_epochs);
    `seed`: what each epoch's dropout masks are drawn from, with the epoch."""
    judges = [
        tf.keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=patience, restore_best_weights=True, verbose=1
        ),
        tf.keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", factor=LEARNING_RATE_DECAY_ON_PLATEAU, patience=0, verbose=1
        ),
    ]
    kept = [JudgesBackup(backup[0], judges, write=backup[1])] if backup else []
    return classifier.fit(
        train,
        validation_data=evaluation,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        callbacks=[EpochSeededDropout(seed), *judges, *kept, *callbacks],
        verbose=2,
    )


def build_classifier(
    fn_args: FnArgs, tf_transform_output: tft.TFTransformOutput, strategy: tf.distribute.Strategy
) -> tuple[tf.keras.Model, dict]:
    """The compiled model run_fn fits, and what it starts from: the weights of
    `fn_args.base_model` when warm_start.start_from can use them, else fresh ones. Separate
    from run_fn so that the starting weights can be checked before any training."""
    config = fn_args.custom_config or {}
    model_name = config.get("model", DEFAULT_MODEL)
    policy = tf.keras.mixed_precision.global_policy()  # layers keep the one they were built with
    if config.get("mixed_precision"):
        tf.keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        with strategy.scope():
            classifier = model.build_model(
                model_name,
                float(config.get("learning_rate", DEFAULT_LEARNING_RATE)),
                float(config.get("embedding_dropout", DEFAULT_EMBEDDING_DROPOUT)),
            )
    finally:
        tf.keras.mixed_precision.set_global_policy(policy)
    start = warm_start.start_from(
        classifier,
        model_name,
        fn_args.base_model,
        tf_transform_output,
        enabled=bool(config.get("warm_start", True)),
    )
    return classifier, start


def run_fn(fn_args: FnArgs) -> None:
    """Trains and exports the model. Keras's BackupAndRestore keeps the state of the last
    finished epoch in the ModelRun artifact while it trains, so a Trainer execution restarted
    with the same artifacts (a replica rescheduled on Vertex AI, a retried task) redoes at most
    one epoch; its history then holds the epochs it ran itself. A replica lost during
    multi-worker training fails every other one (ReplicaLostError) instead of leaving it
    waiting."""
    strategy = distribution_strategy()  # first: no TensorFlow op may run before it
    print(f"Training on {strategy.num_replicas_in_sync} replica(s): {_kind(strategy)}")
    config = fn_args.custom_config or {}
    batch_size = int(config.get("batch_size", DEFAULT_BATCH_SIZE))
    model_name = config.get("model", DEFAULT_MODEL)
    tf.keras.utils.set_random_seed(SEED)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    backup_dir = os.path.join(fn_args.model_run_dir, TRAINING_BACKUP_DIR_NAME)
    epochs = int(config.get("epochs", DEFAULT_EPOCHS))
    first_epoch = resumed_epoch(backup_dir)
    keys = model.input_keys(model_name)
    train, steps_per_epoch = training_epochs(
        read_examples(fn_args.train_files, fn_args.data_accessor, tf_transform_output, keys),
        batch_size,
        first_epoch,
        epochs,
    )
    evaluation = batch_examples(
        read_examples(fn_args.eval_files, fn_args.data_accessor, tf_transform_output, keys),
        batch_size,
    )
    if features.TOKEN_IDS_KEY in keys:
        print(f"Padding fraction of the eval batches: {padding_fraction(evaluation):.3f}")
    classifier, start = build_classifier(fn_args, tf_transform_output, strategy)
    classifier.summary(print_fn=logging.info)  # in the run's log file, not on the console
    print(warm_start.describe(start))
    timer = EpochTimer()
    if first_epoch:
        print(f"Resuming at epoch {first_epoch + 1} from the backup in {backup_dir}")
    try:
        history = fit(
            classifier,
            train,
            evaluation,
            epochs=epochs,
            steps_per_epoch=steps_per_epoch,
            patience=int(config.get("patience", DEFAULT_PATIENCE)),
            backup=(backup_dir, strategy.extended.should_checkpoint),
            callbacks=[
                tf.keras.callbacks.BackupAndRestore(backup_dir),
                tf.keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir),
                timer,
            ],
        )
    except tf.errors.UnavailableError as error:  # MultiWorkerMirroredStrategy's health check
        if cluster_size() == 1:
            raise
        raise ReplicaLostError(
            f"a training replica stopped answering ({(error.message or '').strip()[:300]}): "
            "run the Trainer's replicas again with the same artifacts (retry the job): they "
            f"resume from the last finished epoch in {backup_dir}"
        ) from None
    with _export_dirs(strategy, fn_args) as (serving_model_dir, model_run_dir):
        with tf.io.gfile.GFile(os.path.join(model_run_dir, HISTORY_FILE_NAME), "w") as handle:
            json.dump(
                {
                    **{k: [float(v) for v in values] for k, values in history.history.items()},
                    EPOCH_SECONDS_KEY: timer.seconds,
                },
                handle,
            )
        with tf.io.gfile.GFile(os.path.join(model_run_dir, WARM_START_FILE_NAME), "w") as handle:
            json.dump(start, handle)
        signatures.export_serving_model(classifier, tf_transform_output, serving_model_dir)
        warm_start.record_kind(serving_model_dir, model_name)
    # Keras deleted its checkpoint, not the folder; every worker is done with it by now.
    if strategy.extended.should_checkpoint and tf.io.gfile.exists(backup_dir):
        tf.io.gfile.rmtree(backup_dir)


@contextlib.contextmanager
def _export_dirs(strategy: tf.distribute.Strategy, fn_args: FnArgs):
    """Where this process writes the model and its history: the Trainer's artifacts on the
    chief; on another worker, a scratch directory deleted afterwards (Keras's multi-worker save
    rule: every worker saves, as saving may need them all, and only the chief's copy is kept).
    Every worker leaves only once the chief has exported, so that TFX's executor finds the
    model in each of them."""
    if strategy.extended.should_checkpoint:
        yield fn_args.serving_model_dir, fn_args.model_run_dir
    else:
        scratch = tempfile.mkdtemp(prefix="agnews-worker-")
        try:
            yield os.path.join(scratch, "model"), scratch
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    if _kind(strategy) == "MultiWorkerMirroredStrategy":  # a collective op is a barrier:
        # it returns once every worker is here
        strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.constant(1)), axis=None)
