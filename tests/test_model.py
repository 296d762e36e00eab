import numpy as np
import pytest
import tensorflow as tf

from components import features, model, settings


def test_default_model_is_the_masked_two_layer_bilstm():
    classifier = model.build_model()
    layers = classifier.layers[1:]  # after the Input
    assert [type(layer).__name__ for layer in layers] == [
        "Embedding", "SpatialDropout1D", "Bidirectional", "Bidirectional", "Dense"]
    embedding, dropout, first, second, head = layers
    assert dropout.rate == settings.DEFAULT_EMBEDDING_DROPOUT
    assert (embedding.input_dim, embedding.output_dim, embedding.mask_zero) == (features.VOCAB_SIZE, 128, True)
    assert isinstance(first.forward_layer, tf.keras.layers.LSTM)
    assert (first.forward_layer.units, first.forward_layer.return_sequences) == (64, True)
    assert (second.forward_layer.units, second.forward_layer.return_sequences) == (64, False)
    assert (head.units, head.activation.__name__) == (features.NUM_CLASSES, "softmax")
    assert type(classifier).__module__.startswith("tf_keras")  # Keras 2, as TFT and TFMA need


def test_embedding_dropout_acts_in_training_only():
    classifier = model.build_model(embedding_dropout=0.5)
    ids = np.array([[5, 17, 42, 7, 9]], dtype=np.int64)
    np.testing.assert_allclose(classifier(ids).numpy(), classifier(ids).numpy())
    assert not np.allclose(classifier(ids, training=True).numpy(), classifier(ids).numpy())
    assert "SpatialDropout1D" not in [type(layer).__name__
                                      for layer in model.build_model(embedding_dropout=0).layers]


def test_padding_does_not_change_the_prediction():
    classifier = model.build_model()
    ids = np.array([[5, 17, 42]], dtype=np.int64)
    padded = np.array([[5, 17, 42, 0, 0, 0, 0]], dtype=np.int64)
    np.testing.assert_allclose(classifier(ids).numpy(), classifier(padded).numpy(), atol=1e-6)


@pytest.mark.parametrize("name", settings.MODEL_NAMES)
def test_every_variant_outputs_a_probability_row(name):
    probabilities = model.build_model(name)(np.array([[3, 4, 0], [9, 0, 0]], dtype=np.int64)).numpy()
    assert probabilities.shape == (2, features.NUM_CLASSES)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_unknown_model_name_is_a_clear_error():
    with pytest.raises(ValueError, match="bilstm2"):
        model.build_model("transformer")


def test_training_does_not_transpile_keras_code(monkeypatch):
    """AutoGraph converting tf_keras's train step costs ~13 s before the first batch."""
    from tensorflow.python.autograph.impl import api as autograph_api

    converted = []
    transform = autograph_api._TRANSPILER.transform

    def record(function, user_context):
        converted.append(f"{getattr(function, '__module__', '')}.{getattr(function, '__name__', '')}")
        return transform(function, user_context)

    monkeypatch.setattr(autograph_api._TRANSPILER, "transform", record)
    classifier = model.build_model("simple_rnn")
    ids = np.array([[3, 4, 0], [9, 0, 0]], dtype=np.int64)
    history = classifier.fit(ids, np.array([0, 1]), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    keras_model_code = [name for name in converted
                        if name.endswith(".train_step") or name.startswith("tf_keras.src.layers.")]
    assert converted and not keras_model_code  # fit's own loop is still converted
