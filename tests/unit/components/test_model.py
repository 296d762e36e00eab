import numpy as np
import pytest
import tensorflow as tf

from components import features, model, settings


def _inputs(name: str, token_ids) -> dict:
    """The model's input dict for these token ids (n-grams: the ids as unigram ids, weight 1)."""
    token_ids = np.asarray(token_ids, dtype=np.int64)
    values = {
        features.TOKEN_IDS_KEY: token_ids,
        features.NGRAM_IDS_KEY: token_ids,
        features.NGRAM_WEIGHTS_KEY: (token_ids != 0).astype(np.float32),
    }
    return {key: values[key] for key in model.input_keys(name)}


def test_default_model_is_the_masked_two_layer_bilstm():
    classifier = model.build_model()
    layers = classifier.layers[1:]  # after the Input
    assert [type(layer).__name__ for layer in layers] == [
        "Embedding",
        "SpatialDropout1D",
        "Bidirectional",
        "Bidirectional",
        "Dense",
        "Activation",
    ]
    embedding, dropout, first, second, head, softmax = layers
    assert dropout.rate == settings.DEFAULT_EMBEDDING_DROPOUT
    assert (embedding.input_dim, embedding.output_dim, embedding.mask_zero) == (
        features.VOCAB_SIZE,
        128,
        True,
    )
    assert isinstance(first.forward_layer, tf.keras.layers.LSTM)
    assert (first.forward_layer.units, first.forward_layer.return_sequences) == (64, True)
    assert (second.forward_layer.units, second.forward_layer.return_sequences) == (64, False)
    assert (head.units, softmax.activation.__name__) == (features.NUM_CLASSES, "softmax")
    assert type(classifier).__module__.startswith("tf_keras")  # Keras 2, as TFT and TFMA need


def test_embedding_dropout_acts_in_training_only():
    classifier = model.build_model(embedding_dropout=0.5)
    ids = _inputs("bilstm2", [[5, 17, 42, 7, 9]])
    np.testing.assert_allclose(classifier(ids).numpy(), classifier(ids).numpy())
    assert not np.allclose(classifier(ids, training=True).numpy(), classifier(ids).numpy())
    assert "SpatialDropout1D" not in [
        type(layer).__name__ for layer in model.build_model(embedding_dropout=0).layers
    ]


@pytest.mark.parametrize("name", ["bilstm2", "linear", "bilstm2_wide"])
def test_padding_does_not_change_the_prediction(name):
    classifier = model.build_model(name)
    ids = _inputs(name, [[5, 17, 42]])
    padded = _inputs(name, [[5, 17, 42, 0, 0, 0, 0]])
    np.testing.assert_allclose(classifier(ids).numpy(), classifier(padded).numpy(), atol=1e-6)


def test_the_wide_model_adds_the_linear_part_to_the_bilstm_logits():
    wide = model.build_model("bilstm2_wide")
    assert model.input_keys("bilstm2_wide") == (
        features.TOKEN_IDS_KEY,
        features.NGRAM_IDS_KEY,
        features.NGRAM_WEIGHTS_KEY,
    )
    assert model.input_keys("linear") == (features.NGRAM_IDS_KEY, features.NGRAM_WEIGHTS_KEY)
    rows = wide.get_layer("ngram_weights_per_class")
    assert (rows.input_dim, rows.output_dim) == (features.NGRAM_VOCAB_SIZE, features.NUM_CLASSES)
    inputs = _inputs("bilstm2_wide", [[5, 17, 42]])
    zero = np.zeros((features.NGRAM_VOCAB_SIZE, features.NUM_CLASSES), np.float32)
    rows.set_weights([zero])
    before = wide(inputs).numpy()  # the BiLSTM's part alone
    row = np.eye(features.NUM_CLASSES, dtype=np.float32)[0] / model.NGRAM_LOGIT_SCALE
    rows.set_weights([zero + row])
    after = wide(inputs).numpy()  # each of the 3 n-grams (weight 1) adds 1 to class 0's logit
    np.testing.assert_allclose(
        after[0, 0] / after[0, 1], before[0, 0] / before[0, 1] * np.exp(3), rtol=1e-4
    )


@pytest.mark.parametrize("name", settings.MODEL_NAMES)
def test_every_variant_outputs_a_probability_row(name):
    probabilities = model.build_model(name)(_inputs(name, [[3, 4, 0], [9, 0, 0]])).numpy()
    assert probabilities.shape == (2, features.NUM_CLASSES)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_unknown_model_name_is_a_clear_error():
    with pytest.raises(ValueError, match="bilstm2"):
        model.build_model("transformer")


def test_training_does_not_transpile_keras_code(monkeypatch):
    """AutoGraph converting tf_keras's train step costs most of the tracing time before the
    first batch."""
    from tensorflow.python.autograph.impl import api as autograph_api

    converted = []
    transform = autograph_api._TRANSPILER.transform

    def record(function, user_context):
        converted.append(
            f"{getattr(function, '__module__', '')}.{getattr(function, '__name__', '')}"
        )
        return transform(function, user_context)

    monkeypatch.setattr(autograph_api._TRANSPILER, "transform", record)
    classifier = model.build_model("simple_rnn")
    history = classifier.fit(
        _inputs("simple_rnn", [[3, 4, 0], [9, 0, 0]]), np.array([0, 1]), epochs=1, verbose=0
    )
    assert np.isfinite(history.history["loss"][0])
    keras_model_code = [
        name
        for name in converted
        if name.endswith(".train_step") or name.startswith("tf_keras.src.layers.")
    ]
    assert converted and not keras_model_code  # fit's own loop is still converted
