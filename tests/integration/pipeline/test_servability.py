"""The servability gate and the warmup requests pushed with every model."""

import shutil

import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from agnews.versions import WARMUP_FILE, load_warm, warmup_requests
from components import features, rows, servability
from pipeline import local_runner, metadata, metadata_connection
from tests.helpers.serving import newest, version_dirs


def _examples(count):
    return [
        rows.make_example(i % features.NUM_CLASSES, f"title {i}", f"description {i}")
        for i in range(count)
    ]


def test_warmup_requests_cover_both_signatures_without_labels():
    logs = servability.warmup_requests(_examples(5))
    requests = [log.predict_log.request for log in logs]
    assert len(logs) <= 1000
    assert {r.model_spec.signature_name for r in requests} == set(servability.WARMUP_SIGNATURES)
    for request in requests:
        rows = {p.tensor_shape.dim[0].size for p in request.inputs.values()}
        assert len(rows) == 1 and rows.pop() in servability.WARMUP_BATCH_SIZES
        if request.model_spec.signature_name == features.SERVING_DEFAULT:
            assert set(request.inputs) == set(features.TEXT_KEYS)
        else:
            for serialized in tf.make_ndarray(request.inputs["examples"]):
                example = tf.train.Example.FromString(serialized)
                assert features.LABEL_KEY not in example.features.feature
                assert features.TITLE_KEY in example.features.feature


def test_pushed_version_carries_warmup_that_the_server_replays(first_run):
    root, _ = first_run
    version = root / "serving" / newest(root / "serving")
    records = [
        prediction_log_pb2.PredictionLog.FromString(r.numpy())
        for r in tf.data.TFRecordDataset(str(version / WARMUP_FILE))
    ]
    assert len(records) == len(servability.WARMUP_SIGNATURES) * len(servability.WARMUP_BATCH_SIZES)
    replayed = warmup_requests(str(version))
    assert [name for name, _ in replayed] == [
        r.predict_log.request.model_spec.signature_name for r in records
    ]
    model = load_warm(str(version))
    assert features.SERVING_DEFAULT in model.signatures


class _BrokenServable(tf.Module):
    """Right signature names and inputs; probabilities that do not sum to 1."""

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.string, name="title"),
            tf.TensorSpec([None], tf.string, name="description"),
        ]
    )
    def serve(self, title, description):
        rows = tf.shape(title)[0]
        return {
            features.PROBABILITIES_KEY: tf.ones([rows, features.NUM_CLASSES]),
            features.CLASS_ID_KEY: tf.zeros([rows], tf.int64),
            features.LABEL_NAME_KEY: tf.fill([rows], features.LABEL_NAMES[0]),
        }


def test_a_broken_candidate_is_not_pushed_and_the_run_says_why(first_run, tmp_path):
    from tfx.components import Pusher
    from tfx.dsl.components.common.importer import Importer
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner
    from tfx.orchestration.pipeline import Pipeline
    from tfx.proto import pusher_pb2
    from tfx.types import standard_artifacts

    root, _ = first_run
    serving_dir = tmp_path / "serving"
    shutil.copytree(root / "serving", serving_dir)
    served_before = [p.name for p in version_dirs(serving_dir)]
    broken = _BrokenServable()
    tf.saved_model.save(
        broken,
        str(tmp_path / "broken" / "Format-Serving"),
        signatures={features.SERVING_DEFAULT: broken.serve},
    )
    store = metadata.open_store(str(root / "metadata.sqlite"))
    (examples,) = [
        a for a in store.get_artifacts_by_type("Examples") if "FileBasedExampleGen" in a.uri
    ][-1:]

    model = Importer(
        source_uri=str(tmp_path / "broken"), artifact_type=standard_artifacts.Model
    ).with_id("candidate")
    raw = Importer(source_uri=examples.uri, artifact_type=standard_artifacts.Examples).with_id(
        "examples"
    )
    gate = servability.ServabilityGate(
        model=model.outputs["result"], examples=raw.outputs["result"]
    )
    pusher = Pusher(
        infra_blessing=gate.outputs["blessing"],
        push_destination=pusher_pb2.PushDestination(
            filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=str(serving_dir))
        ),
    )
    metadata_path = str(tmp_path / "metadata.sqlite")
    LocalDagRunner().run(
        Pipeline(
            pipeline_name="agnews",
            pipeline_root=str(tmp_path / "root"),
            components=[model, raw, gate, pusher],
            metadata_connection_config=metadata_connection.connection_config(metadata_path),
        )
    )

    assert [p.name for p in version_dirs(serving_dir)] == served_before
    summary = local_runner.summarize(metadata_path, "agnews")
    assert not summary.pushed
    assert (
        "serving_default (batch of 1): probabilities sum to 4.0000" in summary.not_servable_reason
    )
    assert "serving_tf_example" in summary.not_servable_reason  # the signature it lacks
    (blessing,) = metadata.open_store(metadata_path).get_artifacts_by_type("InfraBlessing")
    assert blessing.custom_properties["blessed"].int_value == 0
    assert not list((tmp_path / "root").glob("**/stamped_model"))  # nothing left to push by mistake
