"""End-to-end tests of the running service over HTTP on localhost: every endpoint and error class."""

from __future__ import annotations

import concurrent.futures as futures
import io
import json
import re
import struct
import subprocess
import sys
import time
import zlib

import bentoml
import numpy as np
import pytest
import requests
from PIL import Image

from catalog import ModelMetadata
from preprocessing import image_to_vector
from inference.calibration import calibrate, temperature_of
from tools.servers import BENTOML, REPO, Server, free_port
from training import store


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array.astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def drawn_digit() -> bytes:
    """A dark '1' drawn on light paper, off-centre: any model must answer, not necessarily right."""
    canvas = np.full((240, 320), 235, np.uint8)
    canvas[40:200, 150:170] = 20
    return png(canvas)


def post(server, path, files, data=None, timeout=30):
    return requests.post(f"{server.url}{path}", files=files, data=data, timeout=timeout)


def served_probabilities(tag: str, vectors: np.ndarray) -> np.ndarray:
    """What the service must answer for preprocessed ``vectors``: the stored model's output with the
    temperature of its metadata applied."""
    model, entry = store.load_model(tag)
    temperature = temperature_of(ModelMetadata.from_store(entry.info.metadata))
    return calibrate(np.asarray(model(vectors)), temperature)


def check_prediction(body: dict, class_names: list[str], top_k: int, tag: str) -> None:
    assert body["model"] == tag
    assert body["found"] is True and isinstance(body["unsure"], bool)
    assert (body["reason"] is not None) == body["unsure"]
    assert body["label"] in class_names and class_names[body["index"]] == body["label"]
    assert len(body["top_k"]) == top_k
    probabilities = [entry["probability"] for entry in body["top_k"]]
    assert probabilities == sorted(probabilities, reverse=True)
    assert body["top_k"][0] == {"label": body["label"], "probability": body["confidence"]}
    assert all(0 <= p <= 1 for p in probabilities) and sum(probabilities) <= 1 + 1e-5


@pytest.mark.parametrize("route", ["mnist", "asl"])
def test_predict_answers_with_the_models_own_forward_pass(server, served_models, route):
    tag = served_models[route]
    entry = bentoml.models.get(tag)
    class_names = entry.info.metadata["class_names"]
    image = drawn_digit()
    response = post(server, f"/{route}/predict", {"image": ("upload.png", image, "image/png")})
    assert response.status_code == 200, response.text
    body = response.json()
    check_prediction(body, class_names, 3, tag)
    # the same upload through the same preprocessing and model, in this process
    expected = served_probabilities(tag, image_to_vector(image, entry.info.metadata["preprocessing"])[None])[0]
    assert body["index"] == int(expected.argmax())
    assert body["confidence"] == pytest.approx(float(expected.max()), abs=1e-5)
    full = post(server, f"/{route}/predict", {"image": ("u.png", image)},
                {"top_k": str(len(class_names))}).json()
    assert sum(e["probability"] for e in full["top_k"]) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("route", ["mnist", "asl"])
def test_predict_batch_keeps_upload_order(server, served_models, route):
    tag = served_models[route]
    class_names = bentoml.models.get(tag).info.metadata["class_names"]
    rng = np.random.default_rng(0)
    images = [png(rng.integers(0, 255, (28 + i, 28), dtype=np.uint8)) for i in range(5)]
    files = [("images", (f"img{i}.png", data, "image/png")) for i, data in enumerate(images)]
    response = post(server, f"/{route}/predict_batch", files, {"top_k": "2"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == tag and len(body["predictions"]) == 5
    for data, prediction in zip(images, body["predictions"]):
        if prediction["found"]:  # noise may also count as nothing to classify (tests/test_answers.py)
            check_prediction(prediction, class_names, 2, tag)
        single = post(server, f"/{route}/predict", {"image": ("x.png", data)}, {"top_k": "2"}).json()
        assert (single["found"], single["label"]) == (prediction["found"], prediction["label"])
        assert single["confidence"] == pytest.approx(prediction["confidence"], abs=1e-5)


def test_real_test_digits_are_recognised(server, real_data_dir):
    data = np.load(real_data_dir / "mnist.npz")
    x, y = data["x_test"][:40], data["y_test"][:40]
    files = [("images", (f"{i}.png", png(255 - image), "image/png")) for i, image in enumerate(x)]
    body = post(server, "/mnist/predict_batch", files).json()
    predicted = [int(p["label"]) for p in body["predictions"]]
    assert np.mean(np.array(predicted) == y) >= 0.85  # a quick 3-epoch model; dark ink on white paper


def tiny_png_header(width: int, height: int) -> bytes:
    """A valid-looking PNG that claims a huge size (a decompression bomb's header)."""
    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    raw = zlib.compress(b"\x00" * (width // 8 + 1) * 8)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", raw) + chunk(b"IEND", b""))


GOOD = drawn_digit()
BAD_UPLOADS = {
    "empty": b"",
    "random bytes": bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8)),
    "text": b"hello, this is not an image\n",
    "svg": b'<svg xmlns="http://www.w3.org/2000/svg" width="28" height="28"><circle r="9"/></svg>',
    "pdf": b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n",
    "truncated png": GOOD[: len(GOOD) // 2],
    "truncated jpeg": None,  # filled below
}
_jpeg = io.BytesIO()
Image.fromarray(np.full((64, 64), 200, np.uint8)).save(_jpeg, format="JPEG")
BAD_UPLOADS["truncated jpeg"] = _jpeg.getvalue()[:300]


@pytest.mark.parametrize("kind", list(BAD_UPLOADS))
def test_undecodable_uploads_are_400(server, kind):
    response = post(server, "/mnist/predict", {"image": (f"{kind}.bin", BAD_UPLOADS[kind])})
    assert response.status_code == 400, response.text
    assert set(response.json()) == {"error"} and response.json()["error"]


@pytest.mark.parametrize(
    "files, data, status, words",
    [
        ({"file": ("d.png", GOOD)}, None, 400, "no file field 'image'"),
        (None, {"image": "not a file"}, 400, "no file field 'image'"),
        ({"image": ("d.png", GOOD)}, {"top_k": "0"}, 400, "between 1 and 10"),
        ({"image": ("d.png", GOOD)}, {"top_k": "11"}, 400, "between 1 and 10"),
        ({"image": ("d.png", GOOD)}, {"top_k": "three"}, 400, "whole number"),
        ({"image": ("bomb.png", tiny_png_header(30000, 30000))}, None, 413, "megapixels"),
        ({"image": ("big.png", tiny_png_header(2500, 2000))}, None, 413, "limit is 4 megapixels"),
        ({"image": ("huge.bin", b"\0" * (3 * 1024 * 1024 + 10))}, None, 413, "limit of 3 MiB"),
    ],
)
def test_client_mistakes_get_clear_4xx_json(server, files, data, status, words):
    response = post(server, "/mnist/predict", files, data)
    assert response.status_code == status, response.text
    assert words in response.json()["error"]


def test_non_multipart_bodies_are_400(server):
    for kwargs in ({"json": {"image": "x"}}, {"data": b"raw bytes"}, {}):
        response = requests.post(f"{server.url}/asl/predict", timeout=10, **kwargs)
        assert response.status_code == 400 and "error" in response.json()


def test_return_input_shows_what_the_model_saw(server, served_models):
    response = post(server, "/mnist/predict", {"image": ("d.png", GOOD)}, {"return_input": "true"})
    body = response.json()
    assert "input_image" not in post(server, "/mnist/predict", {"image": ("d.png", GOOD)}).json()
    prefix = "data:image/png;base64,"
    assert body["input_image"].startswith(prefix)
    import base64

    seen = np.asarray(Image.open(io.BytesIO(base64.b64decode(body["input_image"][len(prefix):]))))
    expected = image_to_vector(GOOD, "mnist_digit").reshape(28, 28)
    assert seen.shape == (28, 28) and np.abs(seen / 255.0 - expected).max() <= 1 / 255 + 1e-6
    batch = post(server, "/asl/predict_batch", [("images", ("a.png", GOOD))], {"return_input": "1"}).json()
    assert batch["predictions"][0]["input_image"].startswith(prefix)
    assert post(server, "/mnist/predict", {"image": ("d.png", GOOD)}, {"return_input": "maybe"}).status_code == 400


def test_asl_top_k_goes_up_to_24(server):
    response = post(server, "/asl/predict", {"image": ("s.png", GOOD)}, {"top_k": "24"})
    assert response.status_code == 200 and len(response.json()["top_k"]) == 24
    assert post(server, "/asl/predict", {"image": ("s.png", GOOD)}, {"top_k": "25"}).status_code == 400


def test_batch_limits_and_one_bad_file_named(server):
    files = [("images", (f"ok{i}.png", GOOD)) for i in range(3)] + [("images", ("notes.txt", b"hello"))]
    response = post(server, "/mnist/predict_batch", files)
    assert response.status_code == 400 and "image 4 (notes.txt)" in response.json()["error"]
    too_many = [("images", (f"{i}.png", GOOD)) for i in range(65)]
    response = post(server, "/mnist/predict_batch", too_many)
    assert response.status_code == 400 and "1 to 64" in response.json()["error"]
    assert post(server, "/mnist/predict_batch", {"image": ("a.png", GOOD)}).status_code == 400
    sixty_four = [("images", (f"{i}.png", GOOD)) for i in range(64)]
    assert len(post(server, "/mnist/predict_batch", sixty_four).json()["predictions"]) == 64


def test_bentoml_endpoints_and_openapi(server):
    for path in ("/livez", "/readyz", "/metrics"):
        assert requests.get(f"{server.url}{path}", timeout=10).status_code == 200
    spec = requests.get(f"{server.url}/docs.json", timeout=10).json()
    for route in ("mnist", "asl"):
        for path, field in ((f"/{route}/predict", "image"), (f"/{route}/predict_batch", "images")):
            operation = spec["paths"][path]["post"]
            body = operation["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"].split("/")[-1]
            assert set(spec["components"]["schemas"][body]["properties"]) == {field, "top_k", "return_input"}
            assert {"200", "400", "413"} <= set(operation["responses"])
    assert spec["components"]["schemas"]["ErrorBody"]["properties"].keys() == {"error"}


@pytest.mark.parametrize("route", ["mnist", "asl"])
def test_vector_apis_take_preprocessed_pixels(server, served_models, route):
    """POST /<route>_probabilities: BentoML's batchable API for ready-made (n, 784) vectors."""
    preprocessing = bentoml.models.get(served_models[route]).info.metadata["preprocessing"]
    vectors = np.stack([image_to_vector(drawn_digit(), preprocessing), np.zeros(784, np.float32)])
    response = requests.post(f"{server.url}/{route}_probabilities", json={"pixels": vectors.tolist()}, timeout=30)
    assert response.status_code == 200, response.text
    # calibrated, the same numbers as the predict routes give
    np.testing.assert_allclose(response.json(), served_probabilities(served_models[route], vectors), atol=1e-5)
    for bad in ([[0.5] * 100], [[float("nan")] * 784], "pixels", [["x"] * 784]):
        response = requests.post(f"{server.url}/{route}_probabilities", data=json.dumps({"pixels": bad}),
                                 headers={"Content-Type": "application/json"}, timeout=30)
        assert response.status_code == 400 and "error" in response.json(), (bad, response.text)


def _hammer(server, seconds: float, bad_every: int = 0) -> list[tuple[int, dict, bool]]:
    """32 concurrent clients for ``seconds``; every ``bad_every``-th request of a client is garbage."""
    deadline = time.monotonic() + seconds

    def client(n: int):
        session, seen, i = requests.Session(), [], 0
        while time.monotonic() < deadline:
            i += 1
            bad = bad_every and i % bad_every == 0
            payload = b"garbage" if bad else GOOD
            r = session.post(f"{server.url}/mnist/predict", files={"image": ("x.png", payload)}, timeout=30)
            try:
                body = r.json()
            except ValueError:
                body = {"text": r.text[:200]}
            seen.append((r.status_code, body, bool(bad)))
        return seen

    with futures.ThreadPoolExecutor(32) as pool:
        return [item for result in pool.map(client, range(32)) for item in result]


def batch_histogram(server) -> tuple[float, float]:
    """(observations, observations of size 1) of the mnist batch size histogram."""
    text = requests.get(f"{server.url}/metrics", timeout=10).text
    def total(pattern):
        return sum(float(v) for v in re.findall(pattern, text))
    count = total(r'model_batch_size_count\{[^}]*model="mnist"[^}]*\} (\S+)')
    ones = total(r'model_batch_size_bucket\{le="1.0",[^}]*model="mnist"[^}]*\} (\S+)')
    return count, ones


def test_batches_grow_under_concurrent_load_without_503(server):
    before_count, before_ones = batch_histogram(server)
    results = _hammer(server, seconds=6)
    statuses = [status for status, _, _ in results]
    assert statuses.count(200) == len(statuses), (
        {s: statuses.count(s) for s in set(statuses)}, [b for s, b, _ in results if s != 200][:3])
    count, ones = batch_histogram(server)
    assert count - before_count > 0
    assert (count - before_count) - (ones - before_ones) > 0, "no batch of more than one request was formed"


def test_requests_over_the_latency_budget_are_shed_with_a_json_503(served_models, tmp_path):
    """MAX_LATENCY_MS=1: under 32 clients some requests wait longer for their pass; they get 503."""
    tight = Server(env={"MAX_LATENCY_MS": "1", "WORKERS": "1"}, log=tmp_path / "serve.log").wait_ready()

    def client(_):
        session, seen = requests.Session(), []
        for _ in range(40):
            r = session.post(f"{tight.url}/mnist/predict", files={"image": ("x.png", GOOD)}, timeout=30)
            seen.append((r.status_code, r.json(), r.headers.get("Retry-After")))
        return seen

    try:
        with futures.ThreadPoolExecutor(32) as pool:
            results = [item for seen in pool.map(client, range(32)) for item in seen]
    finally:
        tight.stop()
    assert {status for status, _, _ in results} <= {200, 503}
    shed = [(body, retry) for status, body, retry in results if status == 503]
    assert shed, "no request was shed with a 1 ms budget"
    assert all("busy" in body["error"] and retry == "1" for body, retry in shed)
    assert any(status == 200 for status, _, _ in results)


def test_bad_uploads_do_not_disturb_their_neighbours(server):
    reference = post(server, "/mnist/predict", {"image": ("x.png", GOOD)}).json()
    results = _hammer(server, seconds=4, bad_every=3)
    assert any(bad for _, _, bad in results)
    for status, body, bad in results:
        if bad:
            assert status == 400 and "error" in body
        else:
            assert status == 200 and body["label"] == reference["label"]
            assert body["confidence"] == pytest.approx(reference["confidence"], abs=1e-5)
    assert requests.get(f"{server.url}/livez", timeout=10).status_code == 200


def test_missing_model_fails_startup_with_the_command(tmp_path):
    port = free_port()
    done = subprocess.run([BENTOML, "serve", "--port", str(port)], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env={**__import__("os").environ, "BENTOML_HOME": str(tmp_path)})
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "python -m training mnist" in output and "python -m training asl" in output
    assert "Traceback" not in output


def test_importing_the_service_loads_nothing(tmp_path):
    """No trained model, no TensorFlow: importing the service module only declares it."""
    code = ("import sys, service.service as s; print(sorted(s.DigitsAndSigns.apis)); "
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "BENTOML_HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == ["['asl_probabilities', 'mnist_probabilities']", "False False"]


def test_serves_on_jax_by_default_and_on_tensorflow_when_asked(server, served_models, tmp_path):
    """JAX where it is installed (the dev extras, the image); KERAS_BACKEND=tensorflow gives the same answers."""
    pytest.importorskip("jax", reason="jax is not installed (pip install -e '.[dev]' brings it)")
    assert "keras backend: jax" in server.log() and "jax.jit" in server.log()
    tf_server = Server(env={"KERAS_BACKEND": "tensorflow", "WORKERS": "1"}, log=tmp_path / "serve.log").wait_ready()
    try:
        expected = served_probabilities(served_models["mnist"], image_to_vector(GOOD, "mnist_digit")[None])[0]
        for url in (tf_server, server):
            body = post(url, "/mnist/predict", {"image": ("d.png", GOOD)}).json()
            assert body["index"] == int(expected.argmax())
            assert body["confidence"] == pytest.approx(float(expected.max()), abs=1e-4)
        assert "keras backend: tensorflow" in tf_server.log() and "'XLA'" in tf_server.log()
        results = [post(tf_server, "/asl/predict", {"image": ("d.png", GOOD)}).status_code for _ in range(3)]
        assert results == [200, 200, 200]
    finally:
        tf_server.stop()
