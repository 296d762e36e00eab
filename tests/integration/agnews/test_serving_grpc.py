"""`agnews serve`'s gRPC API through tensorflow-serving-api's own PredictionServiceStub and
ModelServiceStub, against a real server on 127.0.0.1."""

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
)

from agnews import predict
from agnews.serving.server import ServeOptions, running_in_thread
from components import features
from tests.helpers.serving import (
    DESCRIPTIONS,
    TITLES,
    call,
    copy_served_model,
    newest,
    predict_request,
)


@pytest.fixture(scope="module")
def server(first_run, tmp_path_factory):
    model_dir = copy_served_model(first_run, tmp_path_factory.mktemp("grpc"))
    options = ServeOptions(model_base_path=str(model_dir), rest_port=0, grpc_port=0, max_batch=8)
    with running_in_thread(options) as running:
        channel = grpc.insecure_channel(f"127.0.0.1:{running.grpc_port}")
        yield running, model_dir, channel
        channel.close()


def test_grpc_predict_equals_rest_predict_and_agnews_predict(server):
    running, model_dir, channel = server
    response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
        predict_request(), timeout=60
    )
    assert response.model_spec.name == "agnews" and str(
        response.model_spec.version.value
    ) == newest(model_dir)
    assert response.model_spec.signature_name == features.SERVING_DEFAULT
    from_grpc = tf.make_ndarray(response.outputs[features.PROBABILITIES_KEY])
    labels = [
        label.decode() for label in tf.make_ndarray(response.outputs[features.LABEL_NAME_KEY])
    ]
    assert list(tf.make_ndarray(response.outputs[features.CLASS_ID_KEY])) == list(
        from_grpc.argmax(axis=1)
    )

    status, body = call(
        f"http://127.0.0.1:{running.rest_port}/v1/models/agnews:predict",
        {
            "instances": [
                {"title": t, "description": d} for t, d in zip(TITLES, DESCRIPTIONS, strict=True)
            ]
        },
    )
    assert status == 200
    from_rest = np.array([row[features.PROBABILITIES_KEY] for row in body["predictions"]])
    from_cli = predict.predict(str(model_dir / newest(model_dir)), TITLES, DESCRIPTIONS)

    np.testing.assert_allclose(from_grpc, from_rest, atol=1e-6)
    np.testing.assert_allclose(
        from_grpc, [list(row["probabilities"].values()) for row in from_cli], atol=1e-5
    )
    assert (
        labels
        == [row[features.LABEL_NAME_KEY] for row in body["predictions"]]
        == [row["label"] for row in from_cli]
    )


def test_output_filter_returns_only_the_outputs_asked_for(server):
    _, _, channel = server
    request = predict_request()
    request.output_filter.append(features.LABEL_NAME_KEY)
    response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
        request, timeout=60
    )
    assert set(response.outputs) == {features.LABEL_NAME_KEY}


def test_metadata_and_status(server):
    _, model_dir, channel = server
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "agnews"
    request.metadata_field.append("signature_def")
    response = prediction_service_pb2_grpc.PredictionServiceStub(channel).GetModelMetadata(
        request, timeout=60
    )
    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    assert set(signatures.signature_def[features.SERVING_DEFAULT].inputs) == set(features.TEXT_KEYS)
    assert set(signatures.signature_def[features.SERVING_DEFAULT].outputs) == {
        features.PROBABILITIES_KEY,
        features.CLASS_ID_KEY,
        features.LABEL_NAME_KEY,
    }

    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = "agnews"
    status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
        status_request, timeout=60
    )
    [version] = status.model_version_status
    assert str(version.version) == newest(model_dir)
    assert version.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert version.status.error_code == 0 and version.status.error_message == ""


def _extra_input(request):
    request.inputs["body"].CopyFrom(tf.make_tensor_proto(["x"] * len(TITLES)))


def _float_title(request):
    request.inputs[features.TITLE_KEY].CopyFrom(tf.make_tensor_proto([1.0, 2.0, 3.0]))


def _matrix_title(request):
    request.inputs[features.TITLE_KEY].CopyFrom(tf.make_tensor_proto([TITLES]))


@pytest.mark.parametrize(
    "change, code, fragment",
    [
        (_extra_input, grpc.StatusCode.INVALID_ARGUMENT, "Sent extra: {body}"),
        (
            lambda r: r.inputs.pop(features.DESCRIPTION_KEY),
            grpc.StatusCode.INVALID_ARGUMENT,
            "Missing but required: {description}",
        ),
        (_float_title, grpc.StatusCode.INVALID_ARGUMENT, "to be string but float is provided"),
        (_matrix_title, grpc.StatusCode.INVALID_ARGUMENT, "must be a vector of strings"),
        (
            lambda r: setattr(r.model_spec, "signature_name", "nope"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "nope",
        ),
        (lambda r: r.output_filter.append("logits"), grpc.StatusCode.INVALID_ARGUMENT, "logits"),
        (
            lambda r: setattr(r.model_spec, "name", "other"),
            grpc.StatusCode.NOT_FOUND,
            "Latest(other)",
        ),
        (
            lambda r: setattr(r.model_spec.version, "value", 1),
            grpc.StatusCode.NOT_FOUND,
            "Specific(agnews, 1)",
        ),
        # An unknown model is NOT_FOUND before its inputs are looked at, as in TF Serving.
        (
            lambda r: (setattr(r.model_spec, "name", "nosuchmodel"), _float_title(r)),
            grpc.StatusCode.NOT_FOUND,
            "Latest(nosuchmodel)",
        ),
        (
            lambda r: (
                setattr(r.model_spec, "name", "nosuchmodel"),
                r.inputs.pop(features.DESCRIPTION_KEY),
            ),
            grpc.StatusCode.NOT_FOUND,
            "Latest(nosuchmodel)",
        ),
        (
            lambda r: setattr(r.model_spec, "version_label", "stable"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "Unrecognized servable version label: stable",
        ),
        (
            lambda r: [
                r.inputs[key].CopyFrom(tf.make_tensor_proto(["x"] * 9))
                for key in features.TEXT_KEYS
            ],
            grpc.StatusCode.INVALID_ARGUMENT,
            "limit of 8",
        ),
    ],
)
def test_bad_predict_requests_get_tf_serving_status_codes(server, change, code, fragment):
    _, _, channel = server
    request = predict_request()
    change(request)
    with pytest.raises(grpc.RpcError) as raised:
        prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=60)
    assert raised.value.code() == code
    assert fragment in raised.value.details() and "Traceback" not in raised.value.details()


def test_bad_metadata_and_status_requests(server):
    _, _, channel = server
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "agnews"
    with pytest.raises(grpc.RpcError) as raised:
        prediction_service_pb2_grpc.PredictionServiceStub(channel).GetModelMetadata(
            request, timeout=60
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = "other"
    with pytest.raises(grpc.RpcError) as raised:
        model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(status_request, timeout=60)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
