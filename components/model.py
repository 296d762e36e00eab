"""The model zoo: the RNN lesson's models over Transform's token ids, masked on padding id 0."""
import tensorflow as tf

from components import features
from components.settings import DEFAULT_EMBEDDING_DROPOUT, DEFAULT_MODEL, MODEL_NAMES

# Each variant: its embedding, then the recurrent layers before the softmax head.
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
assert tuple(_VARIANTS) == MODEL_NAMES, "components.settings.MODEL_NAMES lists every variant"
# Global gradient-norm bound: without it, eval loss jumped 3x in some epochs.
GRADIENT_CLIP_NORM = 1.0


def build_model(name: str = DEFAULT_MODEL, learning_rate: float = 1e-3,
                embedding_dropout: float = DEFAULT_EMBEDDING_DROPOUT) -> tf.keras.Model:
    """A compiled classifier from right-padded int64 token ids [batch, time] to class probabilities."""
    if name not in _VARIANTS:
        raise ValueError(f"Unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}.")
    token_ids = tf.keras.Input(shape=(None,), dtype=tf.int64, name=features.TOKEN_IDS_KEY)
    embedding, *recurrent = _VARIANTS[name]()
    hidden = embedding(token_ids)
    if embedding_dropout:
        hidden = tf.keras.layers.SpatialDropout1D(embedding_dropout)(hidden)
    for layer in recurrent:
        hidden = layer(hidden)
    # float32 softmax keeps probabilities exact under mixed precision too.
    probabilities = tf.keras.layers.Dense(
        features.NUM_CLASSES, activation="softmax", dtype="float32",
        name=features.PROBABILITIES_KEY)(hidden)
    model = tf.keras.Model(token_ids, probabilities, name=name)
    model.compile(
        optimizer=tf.keras.optimizers.Adam(learning_rate, global_clipnorm=GRADIENT_CLIP_NORM),
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
