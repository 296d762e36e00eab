"""The model zoo over Transform's features: the RNN lesson's models over token ids (masked on
padding id 0), a linear model over TF-IDF weighted word n-grams, and the two side by side.

Every model takes a dict of right-padded features named as Transform names them
(`input_keys(name)`), so the trainer, the serving signatures and the tests feed them alike.
"""

import tensorflow as tf

from components import features
from components.settings import DEFAULT_EMBEDDING_DROPOUT, DEFAULT_MODEL, MODEL_NAMES, NGRAM_MODELS


def _bilstm2():
    """The mission's model: the lesson's final masked two-layer bidirectional LSTM."""
    return [
        tf.keras.layers.Embedding(features.VOCAB_SIZE, 128, mask_zero=True),
        tf.keras.layers.Bidirectional(tf.keras.layers.LSTM(64, return_sequences=True)),
        tf.keras.layers.Bidirectional(tf.keras.layers.LSTM(64)),
    ]


# Each model that reads token ids: its embedding, then the recurrent layers before the head.
_SEQUENCE_LAYERS = {
    "bilstm2": _bilstm2,
    "lstm": lambda: [
        tf.keras.layers.Embedding(features.VOCAB_SIZE, 64, mask_zero=True),
        tf.keras.layers.LSTM(8),
    ],
    "simple_rnn": lambda: [
        tf.keras.layers.Embedding(features.VOCAB_SIZE, 64, mask_zero=True),
        tf.keras.layers.SimpleRNN(16),
    ],
    "bilstm2_wide": _bilstm2,
}
assert set(_SEQUENCE_LAYERS) | set(NGRAM_MODELS) == set(MODEL_NAMES), "every variant is built"
# Global gradient-norm bound: without it, eval loss jumped several-fold in some epochs.
GRADIENT_CLIP_NORM = 1.0


def input_keys(name: str) -> tuple[str, ...]:
    """The transformed features model `name` reads, the sequence first when it has one."""
    if name not in MODEL_NAMES:
        raise ValueError(f"Unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}.")
    return ((features.TOKEN_IDS_KEY,) if name in _SEQUENCE_LAYERS else ()) + (
        (features.NGRAM_IDS_KEY, features.NGRAM_WEIGHTS_KEY) if name in NGRAM_MODELS else ()
    )


# The linear part's logits are scaled up by this: Adam moves every weight by about the learning
# rate whatever its gradient, and TF-IDF weights are small (~0.1), so at the BiLSTM's learning
# rate the linear part alone was still far from converged after 10 epochs.
NGRAM_LOGIT_SCALE = 30.0


def input_dtype(key: str) -> tf.DType:
    """The dtype of a model input: float32 TF-IDF weights, int64 ids."""
    return tf.float32 if key == features.NGRAM_WEIGHTS_KEY else tf.int64


def _ngram_logits(ngram_ids: tf.Tensor, ngram_weights: tf.Tensor) -> tf.Tensor:
    """A linear map of the TF-IDF weighted bag of n-grams to one logit per class: the weight of
    each n-gram in the example times its learned per-class row (padding has weight 0)."""
    rows = tf.keras.layers.Embedding(
        features.NGRAM_VOCAB_SIZE,
        features.NUM_CLASSES,
        embeddings_initializer="zeros",
        name="ngram_weights_per_class",
    )(ngram_ids)
    bag = tf.keras.layers.Dot(axes=1, name="weighted_bag")([ngram_weights, rows])
    return tf.keras.layers.Rescaling(NGRAM_LOGIT_SCALE, name="ngram_logits")(bag)


def build_model(
    name: str = DEFAULT_MODEL,
    learning_rate: float = 1e-3,
    embedding_dropout: float = DEFAULT_EMBEDDING_DROPOUT,
) -> tf.keras.Model:
    """A compiled classifier from a dict of right-padded features (`input_keys(name)`) to class
    probabilities."""
    inputs = {
        key: tf.keras.Input(shape=(None,), name=key, dtype=input_dtype(key))
        for key in input_keys(name)
    }
    logits = []
    if name in _SEQUENCE_LAYERS:
        embedding, *recurrent = _SEQUENCE_LAYERS[name]()
        hidden = embedding(inputs[features.TOKEN_IDS_KEY])
        if embedding_dropout:
            # Its masks come from a tf.random.Generator, which the Trainer reseeds per epoch
            # (trainer.EpochSeededDropout), so that a resumed Trainer draws the same ones.
            hidden = tf.keras.layers.SpatialDropout1D(embedding_dropout, force_generator=True)(
                hidden
            )
        for layer in recurrent:
            hidden = layer(hidden)
        logits.append(tf.keras.layers.Dense(features.NUM_CLASSES, name="sequence_logits")(hidden))
    if name in NGRAM_MODELS:
        logits.append(
            _ngram_logits(inputs[features.NGRAM_IDS_KEY], inputs[features.NGRAM_WEIGHTS_KEY])
        )
    if len(logits) > 1:
        logits = [tf.keras.layers.Add()(logits)]
    # One softmax over the summed logits; float32 keeps probabilities exact under mixed precision.
    probabilities = tf.keras.layers.Activation(
        "softmax", dtype="float32", name=features.PROBABILITIES_KEY
    )(logits[0])
    model = tf.keras.Model(inputs, probabilities, name=name)
    model.compile(
        optimizer=tf.keras.optimizers.Adam(learning_rate, global_clipnorm=GRADIENT_CLIP_NORM),
        loss=tf.keras.losses.SparseCategoricalCrossentropy(),
        metrics=[tf.keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    _run_keras_steps_as_written(model)
    return model


def _run_keras_steps_as_written(model: tf.keras.Model) -> None:
    """Keeps AutoGraph out of Keras's own train/test/predict steps.

    AutoGraph skips the `keras` package but not `tf_keras`, so every fit() would transpile
    Keras's code (model, layers, LSTM backend selection) before the first step: most of the
    time it takes to trace the BiLSTM's train step. That code is written for graph mode and
    runs unconverted, as it always did under Keras 2.
    """
    for step in ("train_step", "test_step", "predict_step"):
        setattr(model, step, tf.autograph.experimental.do_not_convert(getattr(model, step)))
