"""Trainer's run_fn: trains the chosen model on Transform's output and exports it for serving."""
from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft
from tfx import v1 as tfx
from tfx_bsl.public import tfxio

from components import features, model, signatures

DEFAULT_EPOCHS = 3
DEFAULT_BATCH_SIZE = 64
DEFAULT_LEARNING_RATE = 1e-3
SEED = 42


def distribution_strategy() -> tf.distribute.Strategy:
    """Mirrors over every visible GPU (one CPU replica when there is none)."""
    for gpu in tf.config.list_physical_devices("GPU"):
        tf.config.experimental.set_memory_growth(gpu, True)
    return tf.distribute.MirroredStrategy()


def make_dataset(file_pattern, data_accessor, tf_transform_output: tft.TFTransformOutput,
                 batch_size: int, shuffle: bool) -> tf.data.Dataset:
    """(right-padded token ids, label) batches, each padded only to its own longest row."""
    dataset = data_accessor.tf_dataset_factory(
        file_pattern,
        tfxio.TensorFlowDatasetOptions(batch_size=batch_size, label_key=features.LABEL_KEY,
                                       num_epochs=1, shuffle=shuffle, shuffle_seed=SEED),
        tf_transform_output.transformed_metadata.schema)
    return dataset.map(
        lambda batch, label: (signatures.dense_token_ids(batch[features.TOKEN_IDS_KEY]), label),
        num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def run_fn(fn_args: tfx.components.FnArgs) -> None:
    config = fn_args.custom_config or {}
    batch_size = int(config.get("batch_size", DEFAULT_BATCH_SIZE))
    tf.keras.utils.set_random_seed(SEED)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    train = make_dataset(fn_args.train_files, fn_args.data_accessor, tf_transform_output,
                         batch_size, shuffle=True)
    evaluation = make_dataset(fn_args.eval_files, fn_args.data_accessor, tf_transform_output,
                              batch_size, shuffle=False)
    with distribution_strategy().scope():
        classifier = model.build_model(
            config.get("model", model.DEFAULT_MODEL),
            float(config.get("learning_rate", DEFAULT_LEARNING_RATE)))
    classifier.summary(print_fn=print)
    classifier.fit(
        train, validation_data=evaluation,
        epochs=int(config.get("epochs", DEFAULT_EPOCHS)),
        callbacks=[tf.keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir)],
        verbose=2)
    signatures.export_serving_model(classifier, tf_transform_output, fn_args.serving_model_dir)
