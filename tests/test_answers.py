"""The answer's ``found`` / ``unsure`` / ``reason`` fields and the calibrated probabilities, from the
arithmetic up to the running service (the session server, and one started on a store whose model
carries a temperature)."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys

import bentoml
import numpy as np
import pytest
import requests
from PIL import Image

from catalog import ModelMetadata
from preprocessing import image_to_vector, prepare_upload
from inference.answers import answer, not_found
from inference.calibration import calibrate, temperature_of
from service.settings import Settings
from tools.ood import ood_uploads
from tools.servers import REPO, Server
from tools.synthetic import synthetic_images
from training import store


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(array, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def digit_photo() -> bytes:
    """A dark '7' on light paper."""
    canvas = np.full((240, 240), 230, np.uint8)
    canvas[50:70, 60:190] = 25
    for row in range(70, 200):
        col = 185 - (row - 70) * 80 // 130
        canvas[row, col - 10 : col + 10] = 25
    return png(canvas)


BLANK = {"mnist": png(np.full((120, 160), 255, np.uint8)),  # white paper: no ink
         "asl": png(np.zeros((120, 160), np.uint8))}  # black frame: no hand


def post(url: str, files, data=None):
    response = requests.post(url, files=files, data=data, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def batch_passes(server, route: str) -> float:
    """Forward passes of a route so far (the model_batch_size histogram's count)."""
    text = requests.get(f"{server.url}/metrics", timeout=10).text
    return sum(float(v) for v in re.findall(rf'model_batch_size_count{{[^}}]*model="{route}"[^}}]*}} (\S+)', text))


# ------------------------------------------------------------------ the arithmetic


def test_calibrate_is_softmax_of_the_logits_over_the_temperature():
    logits = np.array([[2.0, 1.0, -1.0, 0.5], [10.0, -30.0, 0.0, 3.0]], np.float64)
    softmax = lambda z: np.exp(z - z.max(1, keepdims=True)) / np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True)
    p = softmax(logits).astype(np.float32)
    for temperature in (0.5, 1.0, 2.0, 3.7):
        np.testing.assert_allclose(calibrate(p, temperature), softmax(logits / temperature), rtol=1e-5, atol=1e-7)
    assert calibrate(p, 1.0) is p  # temperature 1: untouched, no work
    assert calibrate(p[0], 2.0).shape == (4,)
    # softmax outputs that underflowed to 0 stay finite, and the order of the classes is kept
    hard = np.array([[1.0, 0.0, 0.0]], np.float32)
    out = calibrate(hard, 20.0)
    assert np.isfinite(out).all() and out.sum() == pytest.approx(1.0, abs=1e-6) and out.argmax() == 0
    assert out[0, 0] < 1.0  # a high temperature softens even a certain answer


def test_answer_fields():
    p = np.array([0.1, 0.55, 0.35], np.float32)
    sure = answer(p, ["a", "b", "c"], "m:1", 2, unsure_below=0.5)
    assert sure == {"found": True, "unsure": False, "label": "b", "index": 1, "confidence": pytest.approx(0.55),
                    "top_k": [{"label": "b", "probability": pytest.approx(0.55)},
                              {"label": "c", "probability": pytest.approx(0.35)}],
                    "reason": None, "model": "m:1"}
    unsure = answer(p, ["a", "b", "c"], "m:1", 1, unsure_below=0.6)
    assert unsure["unsure"] and unsure["label"] == "b" and "not sure" in unsure["reason"]
    nothing = not_found("the image is blank", "m:1", np.zeros(784, np.float32))
    assert {k: v for k, v in nothing.items() if k != "input_image"} == {
        "found": False, "unsure": True, "label": None, "index": None, "confidence": None, "top_k": [],
        "reason": "the image is blank", "model": "m:1"}
    assert nothing["input_image"].startswith("data:image/png;base64,")


@pytest.mark.parametrize("raw, value", [("0.75", 0.75), ("0", 0.0), ("1", 1.0)])
def test_unsure_below_setting(raw, value):
    assert Settings.from_env({"UNSURE_BELOW": raw}).unsure_below == value


@pytest.mark.parametrize("raw", ["high", "1.5", "-0.1", "nan"])
def test_unsure_below_setting_refuses_nonsense(raw):
    with pytest.raises(ValueError, match="UNSURE_BELOW"):
        Settings.from_env({"UNSURE_BELOW": raw})


# ------------------------------------------------------------------ the session server


@pytest.mark.parametrize("route", ["mnist", "asl"])
def test_a_blank_upload_is_found_false_without_a_forward_pass(server, served_models, route):
    passes = batch_passes(server, route)
    body = post(f"{server.url}/{route}/predict", {"image": ("blank.png", BLANK[route])}, {"return_input": "true"})
    assert body["found"] is False and body["unsure"] is True
    assert body["label"] is None and body["index"] is None and body["confidence"] is None
    assert body["top_k"] == [] and body["reason"] and body["model"] == served_models[route]
    assert body["input_image"].startswith("data:image/png;base64,")  # what the model would have seen
    batch = post(f"{server.url}/{route}/predict_batch", [("images", ("b1.png", BLANK[route])),
                                                          ("images", ("b2.png", BLANK[route]))])
    assert [p["found"] for p in batch["predictions"]] == [False, False]
    assert batch_passes(server, route) == passes  # the model did not run for nothing


def test_openapi_documents_the_answer_fields(server):
    schemas = requests.get(f"{server.url}/docs.json", timeout=10).json()["components"]["schemas"]
    fields = schemas["Prediction"]["properties"]
    assert {"found", "unsure", "label", "index", "confidence", "top_k", "reason", "model"} <= set(fields)
    assert "UNSURE_BELOW" in fields["unsure"]["description"]
    assert "null when nothing was found" in fields["confidence"]["description"]
    assert "temperature" in fields["confidence"]["description"]


def test_batch_keeps_upload_order_with_a_blank_in_the_middle(server, served_models):
    tag = served_models["mnist"]
    good = digit_photo()
    files = [("images", ("a.png", good)), ("images", ("blank.png", BLANK["mnist"])),
             ("images", ("c.png", png(255 - np.asarray(Image.open(io.BytesIO(good))))))]
    passes = batch_passes(server, "mnist")
    body = post(f"{server.url}/mnist/predict_batch", files, {"top_k": "3"})
    assert batch_passes(server, "mnist") == passes + 1  # one pass, for the two with something in them
    first, blank, third = body["predictions"]
    assert (first["found"], blank["found"], third["found"]) == (True, False, True)
    assert blank["label"] is None and blank["top_k"] == []
    single = post(f"{server.url}/mnist/predict", {"image": ("a.png", good)}, {"top_k": "3"})
    assert (single["label"], single["unsure"]) == (first["label"], first["unsure"])
    assert single["confidence"] == pytest.approx(first["confidence"], abs=1e-5)
    # the same digit, light on dark: the same answer
    assert third["label"] == first["label"]
    vectors = np.stack([image_to_vector(good, "mnist_digit")])
    model, entry = store.load_model(tag)
    expected = calibrate(np.asarray(model(vectors)), temperature_of(ModelMetadata.from_store(entry.info.metadata)))
    assert first["confidence"] == pytest.approx(float(expected.max()), abs=1e-5)


def blend_at_the_boundary(model, temperature: float, a: np.ndarray, b: np.ndarray) -> tuple[bytes, float]:
    """A 28x28 PNG between sign images ``a`` and ``b`` (labelled differently) where the model's
    answer flips (bisection on the blend): two classes nearly tie there, so it is unsure."""
    def probabilities(alpha: float) -> tuple[bytes, np.ndarray]:
        data = png(np.rint((1 - alpha) * a + alpha * b))
        prepared = prepare_upload(data, "asl_sign")
        assert prepared.found, f"a blend of two sign images counts as no hand: {prepared.reason}"
        return data, calibrate(np.asarray(model(prepared.vector[None])), temperature)[0]

    start = probabilities(0.0)[1].argmax()
    low, high = 0.0, 1.0
    for _ in range(12):  # to 1/4096: finer than the PNG's 1/255 steps
        middle = (low + high) / 2
        if probabilities(middle)[1].argmax() == start:
            low = middle
        else:
            high = middle
    candidates = [probabilities(low), probabilities(high)]
    data, p = min(candidates, key=lambda c: c[1].max())
    return data, float(p.max())


def sign_images() -> np.ndarray:
    """24 sign images, (24, 28, 28) float: Sign Language MNIST test rows with DATA_DIR, else the
    synthetic stand-ins the session's models then learned."""
    data_dir = os.environ.get("DATA_DIR")
    if data_dir and os.path.isfile(os.path.join(data_dir, "mnist.npz")):
        from training import datasets

        return datasets.load("asl", data_dir).x_test[:24].astype(np.float64)
    return synthetic_images(np.arange(24), seed=3).astype(np.float64)


def test_unsure_for_an_ambiguous_input_and_only_below_the_threshold(server, served_models):
    """A blend of two sign images where the model's answer flips. 28x28 sign PNGs reach the model
    as they are, so the answer is computed in-process exactly as the server does."""
    tag = served_models["asl"]
    model, entry = store.load_model(tag)
    temperature = temperature_of(ModelMetadata.from_store(entry.info.metadata))
    threshold = Settings.from_env().unsure_below  # the session server's (its env sets no UNSURE_BELOW)
    # two images the model labels differently
    images = sign_images()
    labels = np.asarray(model((images.reshape(-1, 784) / 255).astype(np.float32))).argmax(1)
    second = int(np.flatnonzero(labels != labels[0])[0])
    ambiguous, confidence = blend_at_the_boundary(model, temperature, images[0], images[second])
    assert confidence < threshold, "the blend at the boundary should be below the threshold"
    body = post(f"{server.url}/asl/predict", {"image": ("blend.png", ambiguous)})
    assert body["found"] and body["unsure"] is True and "not sure" in body["reason"]
    assert body["confidence"] == pytest.approx(confidence, abs=1e-5) and body["label"] is not None
    # and the flag follows the threshold on whatever comes: out-of-distribution uploads, a digit
    uploads = ood_uploads("noise", 3, np.random.default_rng(5)) + ood_uploads("textures", 3, np.random.default_rng(6))
    batch = post(f"{server.url}/asl/predict_batch", [("images", (f"{i}.png", u)) for i, u in enumerate(uploads)])
    for prediction in batch["predictions"]:
        if prediction["found"]:
            assert prediction["unsure"] == (prediction["confidence"] < threshold)
            assert (prediction["reason"] is not None) == prediction["unsure"]


# ------------------------------------------------------------------ a model stored with a temperature

SAVE_WITH_TEMPERATURE = """
import json, sys
from catalog import Calibration, family
from execution.forward import load_model
from training.store import save_model
for route, path, metadata, temperature in json.loads(sys.argv[1]):
    meta = json.loads(metadata)
    save_model(load_model(path), family(route).store_name, family(route), metrics=meta["metrics"],
               training=meta["training"], data_sha256=meta["data_sha256"],
               calibration=Calibration(temperature=temperature) if temperature else None)
"""


def test_the_temperature_in_the_metadata_is_applied_to_every_probability(served_models, tmp_path):
    """The session's models saved again in a new store, MNIST with temperature 2.5 (ASL without):
    every served probability is softmax(log p / 2.5); UNSURE_BELOW=0.9 flags what is below."""
    temperature = 2.5
    jobs = []
    for route, tag in served_models.items():
        entry = bentoml.models.get(tag)
        metadata = ModelMetadata.from_store(entry.info.metadata)
        jobs.append((route, entry.path_of("model.keras"), metadata.model_dump_json(),
                     temperature if route == "mnist" else None))
    home = tmp_path / "store"
    done = subprocess.run([sys.executable, "-c", SAVE_WITH_TEMPERATURE, json.dumps(jobs)], cwd=REPO, timeout=300,
                          capture_output=True, text=True, env={**os.environ, "BENTOML_HOME": str(home)})
    assert done.returncode == 0, done.stderr[-3000:]
    served = Server(env={"BENTOML_HOME": str(home), "WORKERS": "1", "UNSURE_BELOW": "0.9"},
                    log=tmp_path / "serve.log").wait_ready()
    try:
        model, _ = store.load_model(served_models["mnist"])
        candidates = [digit_photo(), *ood_uploads("scribbles", 6, np.random.default_rng(2))]
        uploads = [u for u in candidates if prepare_upload(u, "mnist_digit").found]  # something to classify
        assert len(uploads) >= 2
        vectors = np.stack([image_to_vector(u, "mnist_digit") for u in uploads])
        raw = np.asarray(model(vectors))
        expected = calibrate(raw, temperature)
        assert not np.allclose(expected, raw, atol=1e-3)  # the temperature makes a difference here
        body = post(f"{served.url}/mnist/predict_batch", [("images", (f"{i}.png", u)) for i, u in enumerate(uploads)],
                    {"top_k": "10"})
        assert body["model"].startswith("mnist_dense:") and body["model"] != served_models["mnist"]
        for prediction, p in zip(body["predictions"], expected):
            got = np.zeros(10)
            for entry in prediction["top_k"]:
                got[int(entry["label"])] = entry["probability"]
            np.testing.assert_allclose(got, p, atol=1e-5)
            assert prediction["confidence"] == pytest.approx(float(p.max()), abs=1e-5)
            assert prediction["unsure"] == (float(p.max()) < 0.9)
        single = post(f"{served.url}/mnist/predict", {"image": ("d.png", uploads[0])})
        assert single["confidence"] == pytest.approx(float(expected[0].max()), abs=1e-5)
        vector_api = requests.post(f"{served.url}/mnist_probabilities", json={"pixels": vectors.tolist()}, timeout=60)
        np.testing.assert_allclose(vector_api.json(), expected, atol=1e-5)
        # the ASL model was stored without a calibration: temperature 1, its raw softmax
        asl_model, _ = store.load_model(served_models["asl"])
        sign = png(synthetic_images(np.array([4]), seed=1)[0])
        sign_answer = post(f"{served.url}/asl/predict", {"image": ("s.png", sign)})
        raw_sign = np.asarray(asl_model(image_to_vector(sign, "asl_sign")[None]))[0]
        assert sign_answer["confidence"] == pytest.approx(float(raw_sign.max()), abs=1e-5)
    finally:
        served.stop()
