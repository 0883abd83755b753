"""The hard-photo generator (tools/photos.py) and, on real data, the stem on hard photos."""

from __future__ import annotations

import io
import pathlib
import shutil
import sys

import numpy as np
import pytest
from PIL import Image

from preprocessing import ASL_SIGN, MNIST_DIGIT, decode_image, prepare_upload
from tools import photos


def _digit28() -> np.ndarray:
    a = np.zeros((28, 28), np.uint8)
    a[6:22, 12:16] = 255  # a "1"
    a[6:9, 9:13] = 200
    return a


@pytest.mark.parametrize("make", [
    lambda rng: photos.digit_photo(_digit28(), rng),
    photos.blank_page,
    lambda rng: photos.sign_photo(np.full((28, 28), 128, np.uint8), rng),
    photos.blank_frame,
], ids=["digit", "blank-page", "sign", "blank-frame"])
def test_generator_is_deterministic_and_makes_jpeg_photos(make):
    a, b = make(np.random.default_rng(5)), make(np.random.default_rng(5))
    assert a == b and a != make(np.random.default_rng(6))
    img = Image.open(io.BytesIO(a))
    assert img.format == "JPEG" and img.mode == "RGB"


def test_digit_photos_are_phone_sized_dark_ink_on_paper():
    rng = np.random.default_rng(0)
    for _ in range(4):
        data = photos.digit_photo(_digit28(), rng)
        gray = np.asarray(decode_image(data), np.float32)
        assert 600 <= max(gray.shape) <= 3000
        assert np.median(gray) > np.percentile(gray, 0.5) + 40  # paper much lighter than the ink
        assert prepare_upload(data, MNIST_DIGIT).found


def test_generator_rejects_bad_shapes():
    with pytest.raises(ValueError, match="28x28"):
        photos.digit_photo(np.zeros((27, 28), np.uint8), np.random.default_rng(0))


def _accuracy(tag: str, vectors: np.ndarray, labels: np.ndarray) -> float:
    from training import store

    model, _ = store.load_model(tag)
    return float(np.mean(np.asarray(model(vectors)).argmax(1) == labels))


def test_the_baseline_is_the_other_checkouts_stem_whole(tmp_path):
    """``bench.photos --baseline``: the other checkout's modules, their imports among themselves too
    (they import each other as ``preprocessing.*``), and this checkout's package left as it was."""
    from bench.photos import load_baseline
    import preprocessing

    ours = pathlib.Path(preprocessing.__file__).parent
    shutil.copytree(ours, tmp_path / "preprocessing", ignore=shutil.ignore_patterns("__pycache__"))
    with open(tmp_path / "preprocessing" / "digits.py", "a") as f:  # a stem that answers 0.5 everywhere
        f.write("\n\ndef find_digit(image):\n    return Extracted(np.full((IMAGE_SIDE, IMAGE_SIDE), 0.5, np.float32))\n")
    baseline = load_baseline(tmp_path)
    upload = photos.digit_photo(_digit28(), np.random.default_rng(0))
    assert np.all(baseline.prepare_upload(upload, MNIST_DIGIT).vector == 0.5)
    assert not np.all(prepare_upload(upload, MNIST_DIGIT).vector == 0.5)
    assert sys.modules["preprocessing"] is preprocessing
    assert pathlib.Path(sys.modules["preprocessing.digits"].__file__).parent == ours


def test_hard_photos_of_real_digits_are_read_and_blank_pages_flagged(real_data_dir, served_models):
    """A small hard-photo set through the stem and the test session's quick MNIST model (3 epochs on
    12,000 images; ``make bench-photos`` measures the real model on 1,000 photos)."""
    from training import datasets

    data = datasets.load("mnist", real_data_dir)
    rng = np.random.default_rng(2024)
    pick = rng.choice(len(data.x_test), 40, replace=False)
    prepared = [prepare_upload(photos.digit_photo(data.x_test[i], rng), MNIST_DIGIT) for i in pick]
    assert all(p.found for p in prepared)
    vectors = np.stack([p.vector for p in prepared])
    assert _accuracy(served_models["mnist"], vectors, data.y_test[pick]) >= 0.85
    blanks = [prepare_upload(photos.blank_page(rng), MNIST_DIGIT) for _ in range(20)]
    assert sum(not b.found for b in blanks) >= 18
    assert all(b.reason for b in blanks if not b.found)


def test_lit_sign_photos_are_found_and_blank_frames_flagged(real_data_dir):
    from training import datasets

    data = datasets.load("asl", real_data_dir)
    rng = np.random.default_rng(7)
    pick = rng.choice(len(data.x_test), 60, replace=False)
    assert all(prepare_upload(photos.sign_photo(data.x_test[i], rng), ASL_SIGN).found for i in pick)
    flagged = [not prepare_upload(photos.blank_frame(rng), ASL_SIGN).found for _ in range(30)]
    assert sum(flagged) >= 24
