"""The model zoo: the RNN lesson's models over Transform's token ids, masked on padding id 0."""
import tensorflow as tf

from components import features

# Each variant: the layers between the token ids and the softmax head.
_VARIANTS = {
    # The mission's model: the lesson's final masked two-layer bidirectional LSTM.
    "bilstm2": lambda: [
        tf.keras.layers.Embedding(features.VOCAB_SIZE, 128, mask_zero=True),
        tf.keras.layers.Bidirectional(tf.keras.layers.LSTM(64, return_sequences=True)),
        tf.keras.layers.Bidirectional(tf.keras.layers.LSTM(64)),
    ],
    "lstm": lambda: [
        tf.keras.layers.Embedding(features.VOCAB_SIZE, 64, mask_zero=True),
        tf.keras.layers.LSTM(8),
    ],
    "simple_rnn": lambda: [
        tf.keras.layers.Embedding(features.VOCAB_SIZE, 64, mask_zero=True),
        tf.keras.layers.SimpleRNN(16),
    ],
}
MODEL_NAMES = tuple(_VARIANTS)
DEFAULT_MODEL = "bilstm2"


def build_model(name: str = DEFAULT_MODEL, learning_rate: float = 1e-3) -> tf.keras.Model:
    """A compiled classifier from right-padded int64 token ids [batch, time] to class probabilities."""
    if name not in _VARIANTS:
        raise ValueError(f"Unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}.")
    token_ids = tf.keras.Input(shape=(None,), dtype=tf.int64, name=features.TOKEN_IDS_KEY)
    hidden = token_ids
    for layer in _VARIANTS[name]():
        hidden = layer(hidden)
    # float32 softmax keeps probabilities exact under mixed precision too.
    probabilities = tf.keras.layers.Dense(
        features.NUM_CLASSES, activation="softmax", dtype="float32",
        name=features.PROBABILITIES_KEY)(hidden)
    model = tf.keras.Model(token_ids, probabilities, name=name)
    model.compile(
        optimizer=tf.keras.optimizers.Adam(learning_rate),
        loss=tf.keras.losses.SparseCategoricalCrossentropy(),
        metrics=[tf.keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    _run_keras_steps_as_written(model)
    return model


def _run_keras_steps_as_written(model: tf.keras.Model) -> None:
    """Keeps AutoGraph out of Keras's own train/test/predict steps.

    AutoGraph skips the `keras` package but not `tf_keras`, so every fit() would transpile
    Keras's code (model, layers, LSTM backend selection) before the first step: 13 of the 20 s
    it takes to trace the BiLSTM's train step here. That code is written for graph mode and
    runs unconverted, as it always did under Keras 2.
    """
    for step in ("train_step", "test_step", "predict_step"):
        setattr(model, step, tf.autograph.experimental.do_not_convert(getattr(model, step)))
