"""Code that TFX components load: ingestion, preprocessing_fn, run_fn, signatures.

TFT 1.16 and TFMA 0.47 work with Keras 2 only, so Keras 2 (tf-keras) must be selected
before TensorFlow is first imported, whoever imports this package first. GPU memory growth is
set the same way: TensorFlow reads it when it starts, and refuses to change it afterwards
(under LocalDagRunner it has started long before the Trainer).
"""

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
