import numpy as np
import pytest
import tensorflow as tf

from components import features, model


def test_default_model_is_the_masked_two_layer_bilstm():
    classifier = model.build_model()
    layers = classifier.layers[1:]  # after the Input
    assert [type(layer).__name__ for layer in layers] == [
        "Embedding", "Bidirectional", "Bidirectional", "Dense"]
    embedding, first, second, head = layers
    assert (embedding.input_dim, embedding.output_dim, embedding.mask_zero) == (features.VOCAB_SIZE, 128, True)
    assert isinstance(first.forward_layer, tf.keras.layers.LSTM)
    assert (first.forward_layer.units, first.forward_layer.return_sequences) == (64, True)
    assert (second.forward_layer.units, second.forward_layer.return_sequences) == (64, False)
    assert (head.units, head.activation.__name__) == (features.NUM_CLASSES, "softmax")
    assert type(classifier).__module__.startswith("tf_keras")  # Keras 2, as TFT and TFMA need


def test_padding_does_not_change_the_prediction():
    classifier = model.build_model()
    ids = np.array([[5, 17, 42]], dtype=np.int64)
    padded = np.array([[5, 17, 42, 0, 0, 0, 0]], dtype=np.int64)
    np.testing.assert_allclose(classifier(ids).numpy(), classifier(padded).numpy(), atol=1e-6)


@pytest.mark.parametrize("name", model.MODEL_NAMES)
def test_every_variant_outputs_a_probability_row(name):
    probabilities = model.build_model(name)(np.array([[3, 4, 0], [9, 0, 0]], dtype=np.int64)).numpy()
    assert probabilities.shape == (2, features.NUM_CLASSES)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_unknown_model_name_is_a_clear_error():
    with pytest.raises(ValueError, match="bilstm2"):
        model.build_model("transformer")
