"""A servability gate before Pusher, and the warmup requests pushed with every model.

TFX's InfraValidator loads a candidate in a real model server and writes TF Serving's warmup
file, but it needs Docker or Kubernetes. This gate does the same without them: it writes
warmup requests built from eval examples (TF Serving's `assets.extra/tf_serving_warmup_requests`,
a TFRecord file of PredictionLog), then loads the candidate in a separate Python process that
imports TensorFlow and TF Serving's API protos and nothing of this project, replays every
request through its signature and checks the answers. Its output is an InfraBlessing in
InfraValidator's layout, the warmed model under `stamped_model/`, so TFX's Pusher pushes it
as it would push InfraValidator's.
"""

import json
import os
import subprocess
import sys

import tensorflow as tf
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts
from tfx.utils import io_utils, path_utils

from components import features
from components.artifacts import BLESSED_PROPERTY

# Batch sizes of the warmup requests, per signature: 14 records in all (TF Serving reads up
# to 1,000). One request per size is enough to build every kernel both signatures use.
WARMUP_BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)
WARMUP_SIGNATURES = (features.SERVING_DEFAULT, features.SERVING_TF_EXAMPLE)
BLESSED_FILE_NAME = "INFRA_BLESSED"  # InfraValidator's names, which Pusher reads
NOT_BLESSED_FILE_NAME = "INFRA_NOT_BLESSED"
REASON_PROPERTY = "reason"

# Run as `python -c CHECK_SCRIPT MODEL_DIR WARMUP_FILE LABEL_NAMES_JSON`: TensorFlow alone, as a
# model server would load the model. Prints one JSON line: the problems found (none: servable).
CHECK_SCRIPT = r"""
import json, sys
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

model_dir, warmup, label_names = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
problems, checked = [], 0
try:
    model = tf.saved_model.load(model_dir)
    for record in tf.data.TFRecordDataset(warmup):
        request = prediction_log_pb2.PredictionLog.FromString(record.numpy()).predict_log.request
        name = request.model_spec.signature_name
        rows = next(iter(request.inputs.values())).tensor_shape.dim[0].size
        where = f"{name} (batch of {rows})"
        if name not in model.signatures:
            problems.append(f"{where}: the model has no such signature")
            continue
        try:
            out = model.signatures[name](
                **{k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
            )
            p, c, l = (out[k].numpy() for k in ("probabilities", "class_id", "label"))
        except Exception as error:
            problems.append(f"{where}: {type(error).__name__}: {str(error).splitlines()[0][:300]}")
            continue
        checked += 1
        if p.shape != (rows, len(label_names)) or not np.all(np.isfinite(p)) or p.min() < 0:
            problems.append(
                f"{where}: probabilities of shape {p.shape}, "
                f"expected ({rows}, {len(label_names)}), finite, >= 0"
            )
        elif not np.allclose(p.sum(axis=1), 1, atol=1e-3):
            problems.append(
                f"{where}: probabilities sum to "
                f"{p.sum(axis=1).min():.4f}..{p.sum(axis=1).max():.4f}, not 1"
            )
        elif c.shape != (rows,) or not np.array_equal(c, p.argmax(axis=1)):
            problems.append(f"{where}: class_id is not the most probable class")
        elif [v.decode() for v in l] != [label_names[i] for i in c]:
            problems.append(
                f"{where}: labels {sorted(set(v.decode() for v in l))} "
                f"are not the class names {label_names}"
            )
except Exception as error:
    problems.append(f"loading: {type(error).__name__}: {str(error).splitlines()[0][:300]}")
print(json.dumps({"problems": problems, "checked": checked}))
"""


class ServingProcessFailed(RuntimeError):
    """The check itself did not finish (time-out, crash): the run fails instead of recording a
    verdict, because TFX would cache a verdict and never check this model again."""


def _string_tensor(values: list[bytes]):
    return tf.make_tensor_proto(values, dtype=tf.string, shape=[len(values)])


def warmup_requests(
    eval_examples: list[tf.train.Example],
) -> list[prediction_log_pb2.PredictionLog]:
    """PredictionLogs for both serving signatures, one per batch size, from raw eval examples
    (the label removed, as a client sends them)."""
    logs = []
    for signature in WARMUP_SIGNATURES:
        for size in WARMUP_BATCH_SIZES:
            batch = [eval_examples[i % len(eval_examples)] for i in range(size)]
            if signature == features.SERVING_DEFAULT:
                inputs = {
                    key: _string_tensor(
                        [e.features.feature[key].bytes_list.value[0] for e in batch]
                    )
                    for key in features.TEXT_KEYS
                }
            else:
                unlabeled = []
                for example in batch:
                    example = tf.train.Example.FromString(example.SerializeToString())
                    del example.features.feature[features.LABEL_KEY]
                    unlabeled.append(example.SerializeToString())
                inputs = {"examples": _string_tensor(unlabeled)}
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(signature_name=signature), inputs=inputs
            )
            logs.append(
                prediction_log_pb2.PredictionLog(
                    predict_log=prediction_log_pb2.PredictLog(request=request)
                )
            )
    return logs


def read_eval_examples(examples_uri: str, count: int) -> list[tf.train.Example]:
    files = tf.io.gfile.glob(os.path.join(examples_uri, "Split-eval", "*"))
    return [
        tf.train.Example.FromString(record.numpy())
        for record in tf.data.TFRecordDataset(files, compression_type="GZIP").take(count)
    ]


def check_in_separate_process(model_dir: str, timeout_seconds: int) -> list[str]:
    """The problems CHECK_SCRIPT finds when it loads `model_dir` and replays its warmup file.
    The process shares this one's working directory and environment, so `model_dir` means the
    same to it: a relative path, or a URI (gs://...) that TensorFlow opens itself."""
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                CHECK_SCRIPT,
                model_dir,
                path_utils.warmup_file_path(model_dir),
                json.dumps(features.LABEL_NAMES),
            ],
            capture_output=True,
            text=True,
            timeout=timeout_seconds,
        )
    except subprocess.TimeoutExpired:
        raise ServingProcessFailed(
            f"the serving process gave no answer within {timeout_seconds} s"
        ) from None
    if done.returncode != 0 or not done.stdout.strip():
        raise ServingProcessFailed(
            f"the serving process exited with code {done.returncode}: {done.stderr.strip()[-500:]}"
        )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if not result["problems"] and result["checked"] == 0:
        return ["no warmup request was answered"]
    return result["problems"]


def stage_candidate(model_uri: str, examples_uri: str, blessing_uri: str) -> str:
    """Copies the Model artifact's SavedModel to the blessing's stamped_model/ (where Pusher
    takes it from) with warmup requests from the eval examples; returns that directory."""
    candidate = path_utils.stamped_model_path(blessing_uri)
    io_utils.copy_dir(path_utils.serving_model_path(model_uri), candidate)
    io_utils.write_tfrecord_file(
        path_utils.warmup_file_path(candidate),
        *warmup_requests(read_eval_examples(examples_uri, max(WARMUP_BATCH_SIZES))),
    )
    return candidate


def describe(problems: list[str]) -> str:
    """The first problem of each signature (the same fault repeats across batch sizes)."""
    first = {}
    for problem in problems:
        first.setdefault(problem.split(" ", 1)[0], problem)
    return "; ".join(first.values()) + f" ({len(problems)} failed request(s) in all)"


@component
def ServabilityGate(
    model: InputArtifact[standard_artifacts.Model],
    examples: InputArtifact[standard_artifacts.Examples],
    blessing: OutputArtifact[standard_artifacts.InfraBlessing],
    timeout_seconds: Parameter[int] = 600,
) -> None:
    """Blesses the model (with warmup requests, for Pusher) only when a TensorFlow-only process
    loads it and answers every warmup request correctly; else records why not."""
    candidate = stage_candidate(model.uri, examples.uri, blessing.uri)
    problems = check_in_separate_process(candidate, timeout_seconds)
    if problems:
        tf.io.gfile.rmtree(candidate)
        reason = describe(problems)
        io_utils.write_string_file(os.path.join(blessing.uri, NOT_BLESSED_FILE_NAME), reason)
        blessing.set_int_custom_property(BLESSED_PROPERTY, 0)
        blessing.set_string_custom_property(REASON_PROPERTY, reason)
        return
    io_utils.write_string_file(os.path.join(blessing.uri, BLESSED_FILE_NAME), "")
    blessing.set_int_custom_property(BLESSED_PROPERTY, 1)
    blessing.set_int_custom_property("has_model", 1)
