"""The Trainer's fit loop across a restart: BackupAndRestore restores the weights, the optimizer
and the epoch; JudgesBackup restores what decides the epochs after it (early stopping, learning
rate cuts), so a resumed fit ends as the uninterrupted one does."""

import numpy as np
import pytest
import tensorflow as tf

from components import trainer

EPOCHS, PATIENCE = 5, 3


class _Crash(tf.keras.callbacks.Callback):
    """Stops training as epoch `at` begins, as a killed replica would."""

    def __init__(self, at: int):
        super().__init__()
        self._at = at

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self._at:
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
