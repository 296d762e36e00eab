"""The Trainer's fit loop across a restart: BackupAndRestore restores the weights, the optimizer
and the epoch; JudgesBackup restores what decides the epochs after it (early stopping, learning
rate cuts); each epoch's batches and dropout masks depend on the epoch alone, so a resumed fit
ends as the uninterrupted one does."""

import numpy as np
import pytest
import tensorflow as tf

from components import features, model, trainer

EPOCHS, PATIENCE = 5, 3


class _Crash(tf.keras.callbacks.Callback):
    """Stops training as epoch `at` begins, as a killed replica would; at "end", once the last
    epoch's backup is written but before training ends (before Keras deletes the backup)."""

    def __init__(self, at: int | str):
        super().__init__()
        self._at = at

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self._at:
            raise RuntimeError("killed")

    def on_train_end(self, logs=None):
        if self._at == "end":
            raise RuntimeError("killed")


def _data():
    # The eval labels are the train labels flipped: every epoch makes eval loss worse, so the
    # judges act at once (a learning rate cut each epoch, a stop after PATIENCE).
    features = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    labels = (features[:, 0] > 0).astype("int64")
    train = tf.data.Dataset.from_tensor_slices((features, labels)).batch(64)
    evaluation = tf.data.Dataset.from_tensor_slices((features, 1 - labels)).batch(64)
    return train, evaluation


def _classifier() -> tf.keras.Model:
    tf.keras.utils.set_random_seed(1)
    classifier = tf.keras.Sequential([tf.keras.layers.Dense(2, activation="softmax")])
    classifier.compile(tf.keras.optimizers.SGD(0.5), "sparse_categorical_crossentropy")
    return classifier


def _fit(backup_dir, keep_judges: bool, crash_at: int | None = None):
    classifier = _classifier()
    train, evaluation = _data()
    callbacks = [tf.keras.callbacks.BackupAndRestore(str(backup_dir))]
    if crash_at is not None:
        callbacks.append(_Crash(crash_at))
    history = trainer.fit(
        classifier,
        train,
        evaluation,
        epochs=EPOCHS,
        patience=PATIENCE,
        callbacks=callbacks,
        backup=(str(backup_dir), True) if keep_judges else None,
    )
    return classifier.get_weights(), history.history["lr"]


def _resumed(backup_dir, keep_judges: bool):
    with pytest.raises(RuntimeError, match="killed"):
        _fit(backup_dir, keep_judges, crash_at=2)
    return _fit(backup_dir, keep_judges)


def test_a_resumed_fit_stops_and_cuts_the_learning_rate_as_the_uninterrupted_one(tmp_path):
    weights, rates = _fit(tmp_path / "whole", keep_judges=True)
    assert len(rates) == PATIENCE + 1  # stopped early, on the judges' word
    resumed_weights, resumed_rates = _resumed(tmp_path / "resumed", keep_judges=True)
    # It ran the epochs after the crash only, cutting the learning rate as the whole fit did
    # (ReduceLROnPlateau's count restored: a fresh one takes epoch 2 for an improvement).
    assert resumed_rates == rates[2:] and rates[-1] < rates[-2]
    for mine, theirs in zip(resumed_weights, weights, strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-6)

    # Keras's own backup alone forgets the judges: the resumed fit trains on, to other weights.
    forgetful_weights, forgetful_rates = _resumed(tmp_path / "forgetful", keep_judges=False)
    assert len(forgetful_rates) > len(rates[2:])
    assert not all(
        np.allclose(mine, theirs) for mine, theirs in zip(forgetful_weights, weights, strict=True)
    )


def _token_rows(count: int, seed: int) -> tf.data.Dataset:
    """Rows as trainer.read_examples yields them: ({token ids: [length]}, label)."""
    rng = np.random.default_rng(seed)
    rows = [rng.integers(2, 500, size=rng.integers(4, 40)) for _ in range(count)]
    labels = rng.integers(0, features.NUM_CLASSES, size=count)
    return tf.data.Dataset.from_generator(
        lambda: (
            ({features.TOKEN_IDS_KEY: r}, np.int64(label))
            for r, label in zip(rows, labels, strict=True)
        ),
        output_signature=(
            {features.TOKEN_IDS_KEY: tf.TensorSpec([None], tf.int64)},
            tf.TensorSpec([], tf.int64),
        ),
    )


def _batches(dataset: tf.data.Dataset) -> list[bytes]:
    return [row[features.TOKEN_IDS_KEY].numpy().tobytes() for row, _ in dataset]


def test_each_epoch_reads_every_row_once_in_an_order_of_its_own_whatever_epoch_it_starts_at():
    rows = _token_rows(200, seed=0)
    whole, steps = trainer.training_epochs(rows, 16, first_epoch=0, epochs=4)
    batches = _batches(whole)
    assert len(batches) == 4 * steps
    epochs = [batches[e * steps : (e + 1) * steps] for e in range(4)]
    assert len({tuple(epoch) for epoch in epochs}) == 4  # reshuffled every epoch
    all_rows = sorted(_batches(rows))
    for epoch in epochs:
        tokens = np.concatenate([np.frombuffer(b, np.int64) for b in epoch])
        assert sorted(tokens[tokens != features.PAD_ID].tolist()) == sorted(
            np.concatenate([np.frombuffer(r, np.int64) for r in all_rows]).tolist()
        )
    resumed, resumed_steps = trainer.training_epochs(rows, 16, first_epoch=2, epochs=4)
    assert resumed_steps == steps and _batches(resumed) == batches[2 * steps :]


def test_the_trainers_batches_leave_out_tf_datas_autotuning_model():
    # Deleting an iterator with that model joins its thread, which stalled an early-stopped
    # Trainer's export for half a minute (trainer._without_autotuning_model).
    rows = _token_rows(40, seed=0)
    for batches in (
        trainer.training_epochs(rows, 16, first_epoch=0, epochs=2)[0],
        trainer.batch_examples(rows, 16),
    ):
        assert batches.options().autotune.enabled is False
        assert batches.options().experimental_distribute.auto_shard_policy == (
            tf.data.experimental.AutoShardPolicy.DATA
        )


def _fit_recurrent(backup_dir, strategy: tf.distribute.Strategy, crash_at=None):
    """The lesson's SimpleRNN with embedding dropout, fitted as run_fn fits: training_epochs
    from the epoch the backup says, the judges and the backups, in `strategy`."""
    tf.keras.utils.set_random_seed(trainer.SEED)
    with strategy.scope():
        classifier = model.build_model("simple_rnn", 1e-2, embedding_dropout=0.5)
    train, steps = trainer.training_epochs(
        _token_rows(96, seed=1), 16, trainer.resumed_epoch(str(backup_dir)), EPOCHS
    )
    # The crash first: at the end of training it comes before Keras deletes the backup.
    callbacks = [] if crash_at is None else [_Crash(crash_at)]
    callbacks.append(tf.keras.callbacks.BackupAndRestore(str(backup_dir)))
    history = trainer.fit(
        classifier,
        train,
        trainer.batch_examples(_token_rows(32, seed=2), 16),
        epochs=EPOCHS,
        steps_per_epoch=steps,
        patience=EPOCHS,
        callbacks=callbacks,
        backup=(str(backup_dir), True),
    )
    return classifier.get_weights(), history.history


@pytest.mark.parametrize("mirrored", [False, True], ids=["default strategy", "MirroredStrategy"])
def test_a_resumed_fit_with_shuffled_batches_and_dropout_trains_the_uninterrupted_model(
    tmp_path, mirrored
):
    def strategy():  # run_fn's, over the one CPU; the generator is then a mirrored variable
        return (
            tf.distribute.MirroredStrategy(["/cpu:0"]) if mirrored else tf.distribute.get_strategy()
        )

    weights, history = _fit_recurrent(tmp_path / "whole", strategy())
    with pytest.raises(RuntimeError, match="killed"):
        _fit_recurrent(tmp_path / "resumed", strategy(), crash_at=2)
    assert trainer.resumed_epoch(str(tmp_path / "resumed")) == 2
    resumed_weights, resumed_history = _fit_recurrent(tmp_path / "resumed", strategy())
    # The same training losses epoch by epoch: the same batches and the same dropout masks.
    np.testing.assert_allclose(resumed_history["loss"], history["loss"][2:], rtol=1e-6)
    for mine, theirs in zip(resumed_weights, weights, strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-7)


def test_a_fit_stopped_after_its_last_backup_ends_with_the_best_weights(tmp_path):
    weights, history = _fit_recurrent(tmp_path / "whole", tf.distribute.get_strategy())
    # The best eval loss came before the last epoch: its weights, not the last ones, are kept.
    assert np.argmin(history["val_loss"]) < EPOCHS - 1, history["val_loss"]
    with pytest.raises(RuntimeError, match="killed"):
        _fit_recurrent(tmp_path / "resumed", tf.distribute.get_strategy(), crash_at="end")
    assert trainer.resumed_epoch(str(tmp_path / "resumed")) == EPOCHS
    resumed_weights, resumed_history = _fit_recurrent(
        tmp_path / "resumed", tf.distribute.get_strategy()
    )
    assert "loss" not in resumed_history  # no epoch left to run
    for mine, theirs in zip(resumed_weights, weights, strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-7)


def test_a_dropout_layer_that_cannot_be_reseeded_is_refused():
    classifier = tf.keras.Sequential(
        [tf.keras.Input((3,)), tf.keras.layers.Dropout(0.5), tf.keras.layers.Dense(2)]
    )
    classifier.compile("sgd", "mse")
    callback = trainer.EpochSeededDropout(trainer.SEED)
    callback.set_model(classifier)
    with pytest.raises(TypeError, match="force_generator=True"):
        callback.on_train_begin()
