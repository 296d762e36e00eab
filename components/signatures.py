"""Serving signatures: raw text or tf.Examples in, probabilities/class id/label name out.

The Transform graph (with its vocabulary file as an asset) is attached to the model, so
the SavedModel needs no Python code at load time: TF Serving loads it as it is.
"""

import tensorflow as tf
import tensorflow_transform as tft

from components import features


def dense(values) -> tf.Tensor:
    """Right-pads a variable-length feature (sparse in training, ragged or sparse at serving)
    with 0 (PAD_ID for token ids, weight 0 for n-grams) to the longest row of the batch."""
    if isinstance(values, tf.RaggedTensor):
        return values.to_tensor(default_value=tf.constant(features.PAD_ID, values.dtype))
    if isinstance(values, tf.SparseTensor):
        return tf.sparse.to_dense(values, default_value=tf.constant(features.PAD_ID, values.dtype))
    return values


def _as_column(values: tf.Tensor) -> tf.Tensor:
    """[batch] strings to the [batch, 1] shape the raw schema declares."""
    return tf.reshape(values, [-1, 1])


def export_serving_model(
    model: tf.keras.Model, tf_transform_output: tft.TFTransformOutput, export_dir: str
) -> None:
    """Saves `model` with the serving_default, serving_tf_example, batch_scoring and
    transform_features signatures.

    The SavedModel holds these signatures, the weights and the Transform graph, and not Keras's
    own traced layer functions: `model.save` wrote those too (a SavedModel several times
    larger), and restoring them made every load several times slower, in TF Serving, the
    Evaluator and `agnews predict` alike. Nothing loads the model back as a Keras model.

    Long on purpose: the four signatures are closures over one `predict` and the tracked
    module, read top to bottom; split apart, they would pass those around for nothing.
    """
    servable = tf.Module()
    servable.weights = list(model.variables)  # tracked, so the signatures' captures are saved
    servable.tft_layer = tf_transform_output.transform_features_layer()
    raw_spec = tf_transform_output.raw_feature_spec()
    unlabeled_spec = {k: v for k, v in raw_spec.items() if k != features.LABEL_KEY}
    label_names = tf.constant(features.LABEL_NAMES)

    # One function the three predicting signatures call: the model and the Transform graph are
    # traced once for all of them (three traces of the BiLSTM took most of the export's time).
    @tf.function(
        autograph=False,
        input_signature=[
            {key: tf.TensorSpec([None, 1], tf.string, name=key) for key in unlabeled_spec}
        ],
    )
    def predict(raw_features):
        transformed = servable.tft_layer(raw_features)
        probabilities = model({key: dense(transformed[key]) for key in model.input_names})
        class_id = tf.argmax(probabilities, axis=-1)
        return {
            features.PROBABILITIES_KEY: probabilities,
            features.CLASS_ID_KEY: class_id,
            features.LABEL_NAME_KEY: tf.gather(label_names, class_id),
        }

    @tf.function(
        autograph=False,
        input_signature=[
            tf.TensorSpec([None], tf.string, name=features.TITLE_KEY),
            tf.TensorSpec([None], tf.string, name=features.DESCRIPTION_KEY),
        ],
    )
    def serve_text(title, description):
        return predict(
            {
                features.TITLE_KEY: _as_column(title),
                features.DESCRIPTION_KEY: _as_column(description),
            }
        )

    @tf.function(
        autograph=False, input_signature=[tf.TensorSpec([None], tf.string, name="examples")]
    )
    def serve_tf_examples(serialized):
        return predict(tf.io.parse_example(serialized, unlabeled_spec))

    @tf.function(
        autograph=False, input_signature=[tf.TensorSpec([None], tf.string, name="examples")]
    )
    def score_tf_examples(serialized):
        outputs = predict(tf.io.parse_example(serialized, unlabeled_spec))
        return {key: outputs[key] for key in (features.PROBABILITIES_KEY, features.CLASS_ID_KEY)}

    @tf.function(
        autograph=False, input_signature=[tf.TensorSpec([None], tf.string, name="examples")]
    )
    def transform_features(serialized):
        transformed = servable.tft_layer(tf.io.parse_example(serialized, raw_spec))
        return {key: dense(values) for key, values in transformed.items()}

    tf.saved_model.save(
        servable,
        export_dir,
        signatures={
            features.SERVING_DEFAULT: serve_text,
            features.SERVING_TF_EXAMPLE: serve_tf_examples,
            features.BATCH_SCORING: score_tf_examples,
            features.TRANSFORM_FEATURES: transform_features,
        },
    )
