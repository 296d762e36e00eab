"""Choices and defaults that users see in `agnews --help`, `--print-config` and the config file.

Plain Python on purpose: help and the configuration answer without importing TensorFlow,
TFX or Beam. The modules that use these values (model, trainer, ingest) read them from here.
"""

import os

# Model variants (components.model builds them): the mission's masked two-layer BiLSTM, the
# RNN lesson's LSTM(8) and SimpleRNN(16), a linear model over TF-IDF weighted word 1-2-grams
# (the baseline the BiLSTM has to beat) and the BiLSTM with that linear part beside it.
MODEL_NAMES = ("bilstm2", "lstm", "simple_rnn", "linear", "bilstm2_wide")
DEFAULT_MODEL = "bilstm2"
NGRAM_MODELS = ("linear", "bilstm2_wide")  # Transform adds the n-gram features for these
# Trained beside the chosen model in every run (unless --no-baseline) and scored on the same
# holdout examples, so the report shows whether the chosen model earns its cost.
BASELINE_MODEL = "linear"
# Share of embedding channels dropped per example while training (identity at serving).
# ~10k training rows are few for 2.56M embedding weights: the model overfits within two or
# three epochs. This keeps the LSTMs cuDNN-eligible, unlike recurrent dropout, and costs
# nothing on CPU, unlike LSTM input dropout. 0.9 was chosen on eval accuracy over 3 seeds
# among 0.5-0.9 (bench/accuracy.py): eval 0.857, 0.870, 0.872, 0.879, 0.881.
DEFAULT_EMBEDDING_DROPOUT = 0.9

# Training (components.trainer).
DEFAULT_EPOCHS = 10
DEFAULT_PATIENCE = 2
DEFAULT_BATCH_SIZE = 64
DEFAULT_LEARNING_RATE = 1e-3

# Ingestion (components.ingest).
DEFAULT_MAX_BAD_FRACTION = 0.01
DEFAULT_MAX_FIELD_CHARS = 10_000

# `agnews serve` (agnews/serving): TF Serving's REST and gRPC APIs, on its default ports, on
# this machine only by default.
SERVING_MODEL_NAME = "agnews"
# `agnews run --push-baseline` pushes the baseline beside the model, under this name.
BASELINE_SERVING_MODEL_NAME = f"{SERVING_MODEL_NAME}_{BASELINE_MODEL}"
DEFAULT_SERVE_HOST = "127.0.0.1"
DEFAULT_SERVE_PORT = 8501  # REST
DEFAULT_GRPC_PORT = 8500
DEFAULT_MAX_BODY_BYTES = 1 << 20
DEFAULT_MAX_BATCH = 1024  # rows in one request
# Batching of concurrent requests (TF Serving's max_batch_size and batch_timeout_micros).
DEFAULT_BATCH_MAX_ROWS = 64
DEFAULT_BATCH_TIMEOUT_MS = 1.0  # only while another batch runs (agnews/serving/batcher.py)
DEFAULT_BATCH_THREADS = None  # batches run at once (num_batch_threads): None is one per core
# TensorFlow's thread pools in the server process (TF Serving's --tensorflow_intra_op_parallelism
# and --tensorflow_inter_op_parallelism; 0 lets TensorFlow choose). One thread inside each op: a
# serving batch is a few rows, too small for splitting an op over the cores to pay for itself in
# CPU (see bench/README.md); the inter-op pool still runs the two LSTM directions
# side by side.
DEFAULT_INTRA_OP_THREADS = 1
DEFAULT_INTER_OP_THREADS = 0
DEFAULT_LOG_SAMPLE_RATE = 0.01  # share of requests written to --log-requests
# How often new versions are looked for (TF Serving's default).
DEFAULT_FILE_SYSTEM_POLL_WAIT_S = 1.0
# `agnews serve --canary-max-error-rate`: how many of the canary's last model calls it is judged on.
DEFAULT_CANARY_ERROR_WINDOW = 50

# `agnews compile kubeflow` (pipeline.kubeflow_runner): the image built from the Dockerfile.
DEFAULT_KUBEFLOW_IMAGE = "agnews-pipeline:latest"
# agnews run: components at once, each in a process of its own (pipeline/parallel_runner.py);
# 1 is TFX's LocalDagRunner, one after the other in one process. One more than the cores this
# process may use: on two cores, the three checks after training (Evaluator, servability
# check, holdout Evaluator) then run at once, each waiting on start-up and files part of its
# time (from the Trainer's end to the run's end: 3k sample 13.6 s against 17.2 s with one
# worker per core, 12k 14.4 s against 17.5 s, bench/README.md). Before them, with the default
# options, no more than two components that take seconds are ready at once.
DEFAULT_WORKERS = len(os.sched_getaffinity(0)) + 1
