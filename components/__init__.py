"""Code that TFX components load: ingestion, preprocessing_fn, run_fn, signatures.

TFT 1.16 and TFMA 0.47 work with Keras 2 only, so Keras 2 (tf-keras) must be selected
before TensorFlow is first imported, whoever imports this package first.
"""
import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
