"""The Open Inference Protocol routes (service/open_inference.py): with a real client nobody here
wrote (tritonclient) against a real ``bentoml serve`` in both placements, and every bad tensor."""

from __future__ import annotations

import json

import numpy as np
import pytest
import requests

from catalog import family
from preprocessing import image_to_vector
from tests.test_api import FakeService, png
from tests.test_service import drawn_digit, served_probabilities

httpclient = pytest.importorskip("tritonclient.http", reason="tritonclient is missing: pip install -e '.[dev]'")

ROWS = np.random.default_rng(7).integers(0, 256, size=(37, 784), dtype=np.uint8)


def triton(server) -> "httpclient.InferenceServerClient":
    return httpclient.InferenceServerClient(server.url.removeprefix("http://"), network_timeout=60)


def infer(client, name: str, rows: np.ndarray, binary_in: bool = True, binary_out: bool = True) -> np.ndarray:
    pixels = httpclient.InferInput("pixels", list(rows.shape), "UINT8" if rows.dtype == np.uint8 else "FP32")
    pixels.set_data_from_numpy(rows, binary_data=binary_in)
    wanted = httpclient.InferRequestedOutput("probabilities", binary_data=binary_out)
    result = client.infer(name, [pixels], outputs=[wanted], request_id="r-1")
    assert result.get_response()["id"] == "r-1"
    return result.as_numpy("probabilities")


@pytest.fixture(params=["worker", "executor"])
def any_server(request):
    """The session's server (rows in each worker) and its executor-placement twin."""
    return request.getfixturevalue("server" if request.param == "worker" else "executor_server")


@pytest.mark.parametrize("route", ["mnist", "asl"])
def test_tritonclient_reads_health_and_metadata(any_server, served_models, route):
    client = triton(any_server)
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(route)
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    meta = client.get_model_metadata(route)
    version = served_models[route].split(":")[1]
    assert meta["name"] == route and meta["versions"] == [version]
    assert meta["inputs"][0] == {**meta["inputs"][0], "name": "pixels", "datatype": "FP32", "shape": [-1, 784]}
    classes = len(family(route).class_names)
    assert meta["outputs"][0] == {**meta["outputs"][0], "name": "probabilities", "shape": [-1, classes]}
    assert client.is_model_ready(route, model_version=version)
    assert not client.is_model_ready(route, model_version="nope")


@pytest.mark.parametrize("route", ["mnist", "asl"])
def test_tritonclient_gets_the_calibrated_probabilities_in_every_encoding(any_server, served_models, route):
    client = triton(any_server)
    expected = served_probabilities(served_models[route], ROWS.astype(np.float32) / 255)
    as_bytes = infer(client, route, ROWS)
    np.testing.assert_allclose(as_bytes, expected, atol=2e-5)
    np.testing.assert_allclose(infer(client, route, ROWS.astype(np.float32) / 255), expected, atol=2e-5)
    np.testing.assert_allclose(infer(client, route, ROWS[:3], binary_in=False, binary_out=False), expected[:3],
                               atol=2e-5)
    assert as_bytes.dtype == np.float32 and as_bytes.shape == (37, len(family(route).class_names))


def test_the_bulk_route_agrees_with_the_upload_route(any_server, served_models):
    upload = drawn_digit()
    vector = image_to_vector(upload, "mnist_digit")[None]
    answer = requests.post(f"{any_server.url}/mnist/predict", files={"image": ("d.png", upload)}, timeout=30).json()
    probabilities = infer(triton(any_server), "mnist", vector)[0]
    assert answer["index"] == int(probabilities.argmax())
    assert answer["confidence"] == pytest.approx(float(probabilities.max()), abs=1e-6)


def test_a_version_it_does_not_serve_is_404(server, served_models):
    version = served_models["mnist"].split(":")[1]
    body = {"inputs": [{"name": "pixels", "shape": [1, 784], "datatype": "UINT8", "data": [0] * 784}]}
    ok = requests.post(f"{server.url}/v2/models/mnist/versions/{version}/infer", json=body, timeout=30)
    assert ok.status_code == 200 and ok.json()["model_version"] == version
    other = requests.post(f"{server.url}/v2/models/mnist/versions/v0/infer", json=body, timeout=30)
    assert other.status_code == 404 and "v0" in other.json()["error"]


def raw_infer(server, head: dict, binary: bytes = b"", header_length: int | None = None, **headers):
    body = json.dumps(head).encode()
    length = len(body) if header_length is None else header_length
    return requests.post(f"{server.url}/v2/models/mnist/infer", data=body + binary, timeout=30,
                         headers={"Inference-Header-Content-Length": str(length), **headers})


def tensor(rows: int, datatype: str = "UINT8", size: int | None = None, shape=None) -> dict:
    item = 4 if datatype == "FP32" else 1
    return {"inputs": [{"name": "pixels", "shape": shape or [rows, 784], "datatype": datatype,
                        "parameters": {"binary_data_size": rows * 784 * item if size is None else size}}]}


def test_binary_lengths_that_lie_are_400_on_the_real_server(server):
    good = ROWS[:2].tobytes()
    assert raw_infer(server, tensor(2), good).status_code == 200
    for head, binary, length in [
        (tensor(2), good[:-1], None),  # fewer bytes than the tensor needs
        (tensor(2), good + b"x", None),  # more
        (tensor(2, size=99), good, None),  # a binary_data_size that is not the tensor's
        (tensor(2), good, 10_000_000),  # a header length past the body
    ]:
        response = raw_infer(server, head, binary, length)
        assert response.status_code == 400 and "error" in response.json(), response.text


def test_more_rows_than_the_limit_are_refused_before_they_are_sent_far(server):
    response = raw_infer(server, tensor(5000), b"")
    assert response.status_code == 400 and "at most 4096 rows" in response.json()["error"]
    too_big = requests.post(f"{server.url}/v2/models/mnist/infer", data=b"x" * (13 * 2**20), timeout=60)
    assert too_big.status_code == 413 and "limit" in too_big.json()["error"]


# ---- every bad tensor, on the app alone (service/api.py + service/open_inference.py, a stand-in model)


@pytest.fixture
def app_client():
    from starlette.testclient import TestClient

    from service.api import create_app, current_service
    from service.settings import Settings

    app = create_app(Settings())
    service = FakeService()
    app.dependency_overrides[current_service] = lambda: service
    return TestClient(app), service


def json_tensor(data, datatype="FP32", shape=(1, 784), name="pixels"):
    return {"inputs": [{"name": name, "shape": list(shape), "datatype": datatype, "data": data}]}


@pytest.mark.parametrize("body, words", [
    (json_tensor([0.5] * 784, shape=(784,)), "shape must be [n, 784]"),
    (json_tensor([0.5] * 784, shape=(1, 28, 28)), "shape must be [n, 784]"),
    (json_tensor([0.5] * 783), "needs 784"),
    (json_tensor([0.5] * 784, datatype="INT64"), "datatype must be FP32"),
    (json_tensor([0.5] * 784, datatype="FP64"), "datatype must be FP32"),
    (json_tensor([0.5] * 784, name="image"), "unknown input 'image'"),
    (json_tensor([float("nan")] + [0.5] * 783), "finite numbers from 0 to 1"),
    (json_tensor([1e39] + [0.5] * 783), "finite numbers from 0 to 1"),
    (json_tensor([255.0] * 784), "send 0-255 as UINT8"),
    (json_tensor([256] * 784, datatype="UINT8"), "whole numbers from 0 to 255"),
    (json_tensor([1.5] * 784, datatype="UINT8"), "whole numbers from 0 to 255"),
    (json_tensor(["a"] * 784), "data must be numbers"),
    (json_tensor([0.5] * 784 * 5000, shape=(5000, 784)), "at most"),
    ({"inputs": []}, "exactly one input"),
    ({"outputs": []}, '"inputs"'),
    ([1, 2], '"inputs"'),
    ({"inputs": [{"name": "pixels", "shape": [1, 784], "datatype": "FP32"}]}, "neither"),
    ({**json_tensor([0.5] * 784), "outputs": [{"name": "logits"}]}, "unknown output 'logits'"),
])
def test_bad_tensors_are_400_with_the_protocols_error_body(app_client, body, words):
    client, service = app_client
    response = client.post("/v2/models/mnist/infer", content=json.dumps(body, allow_nan=True))
    assert response.status_code in (400, 413) and words in response.json()["error"], response.text
    assert service.models["mnist"].calls == []  # the model never saw it


def test_malformed_json_and_unknown_models(app_client):
    client, _ = app_client
    assert client.post("/v2/models/mnist/infer", content=b"{not json").status_code == 400
    missing = client.get("/v2/models/fashion")
    assert missing.status_code == 404 and "mnist, asl" in missing.json()["error"]
    assert client.post("/v2/models/fashion/infer", json=json_tensor([0.5] * 784)).status_code == 404


def test_a_json_body_past_the_json_limit_is_413_and_points_to_binary(app_client):
    client, _ = app_client
    response = client.post("/v2/models/mnist/infer", json=json_tensor([0.123456789] * 784 * 1000, shape=(1000, 784)))
    assert response.status_code == 413 and "binary" in response.json()["error"]


def test_json_in_json_out_keeps_the_id_and_the_shape(app_client):
    client, service = app_client
    body = {**json_tensor([[0.25] * 784, [0.5] * 784], shape=(2, 784)), "id": "abc"}
    answer = client.post("/v2/models/asl/infer", json=body).json()
    output = answer["outputs"][0]
    assert answer["id"] == "abc" and answer["model_name"] == "asl" and answer["model_version"] == "test"
    assert output["shape"] == [2, 24] and output["datatype"] == "FP32" and len(output["data"]) == 48
    assert service.models["asl"].calls == [2]


def test_the_upload_routes_still_answer_beside_the_protocol(app_client):
    client, _ = app_client
    assert client.post("/mnist/predict", files={"image": ("a.png", png())}).status_code == 200
    assert client.get("/v2/health/ready").json() == {"ready": True}
