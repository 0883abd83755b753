"""The lit evaluation set (training/lit.py): photos under uneven light, answered by a Classifier."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from preprocessing import ASL_SIGN, MNIST_DIGIT, prepare_upload
from training import lit

FLAT = np.full((28, 28), 180, np.uint8)


def test_a_lit_sign_photo_is_unevenly_lit_and_deterministic():
    photos = [lit.lit_photo(FLAT, ASL_SIGN, np.random.default_rng(seed)) for seed in range(12)]
    for photo in photos:
        assert photo.mode == "RGB" and photo.size[0] == photo.size[1]
        assert lit.PHOTO_SIDES[0] <= photo.size[0] <= lit.PHOTO_SIDES[1]
    grey = [np.asarray(p.convert("L"), np.float32) for p in photos]
    # an evenly grey image comes out with a bright and a darker part: down to 0.85 or less of the brightest
    ratios = [np.percentile(g, 2) / np.percentile(g, 98) for g in grey]
    assert max(ratios) < 0.95 and min(ratios) < 0.7
    again = lit.lit_photo(FLAT, ASL_SIGN, np.random.default_rng(3))
    assert np.array_equal(np.asarray(again), np.asarray(photos[3]))


def test_a_lit_digit_photo_is_dark_ink_on_light_paper():
    digit = np.zeros((28, 28), np.uint8)
    digit[6:22, 12:16] = 255  # a "1"
    photo = np.asarray(lit.lit_photo(digit, MNIST_DIGIT, np.random.default_rng(0)).convert("L"), np.float32)
    h, w = photo.shape
    stroke = photo[int(h * 0.3):int(h * 0.7), int(w * 0.46):int(w * 0.54)].mean()
    paper = photo[:, : int(w * 0.3)].mean()
    assert stroke < paper - 60


@pytest.mark.parametrize("preprocessing", [ASL_SIGN, MNIST_DIGIT])
def test_lit_uploads_are_files_the_service_reads(preprocessing):
    rng = np.random.default_rng(1)
    image = np.random.default_rng(2).integers(0, 256, (28, 28)).astype(np.uint8)
    formats = set()
    for _ in range(8):
        data = lit.lit_upload(image, preprocessing, rng)
        formats.add(Image.open(io.BytesIO(data)).format)
        assert prepare_upload(data, preprocessing).vector.shape == (784,)
    assert formats == {"JPEG", "PNG"}
    uploads = lit.lit_uploads(np.stack([image, FLAT]), preprocessing, seed=5)
    assert len(uploads) == 2 and all(isinstance(u, bytes) for u in uploads)
    assert uploads == lit.lit_uploads(np.stack([image, FLAT]), preprocessing, seed=5)
    assert uploads != lit.lit_uploads(np.stack([image, FLAT]), preprocessing, seed=6)


def test_lit_accuracy_counts_answers_and_nothing_found_as_wrong():
    from catalog import ModelMetadata
    from inference import Classifier

    digit = np.zeros((28, 28), np.uint8)
    digit[6:22, 12:16] = 255
    blank = np.zeros((28, 28), np.uint8)  # a photo of empty paper: nothing found
    uploads = lit.lit_uploads(np.stack([digit, digit, blank]), MNIST_DIGIT, seed=0)
    always_one = lambda x: np.tile(np.eye(10, dtype=np.float32)[1], (len(x), 1))  # noqa: E731
    classifier = Classifier("test", ModelMetadata(class_names=list("0123456789"), preprocessing=MNIST_DIGIT),
                            always_one)
    answers = classifier.predict(uploads)
    assert [a["found"] for a in answers] == [True, True, False]
    assert lit.accuracy(answers, np.array([1, 7, 1])) == pytest.approx(1 / 3)
    with pytest.raises(ValueError):
        lit.accuracy(answers, np.array([1, 1]))


def test_sample_is_seeded_and_whole_when_small():
    assert lit.sample(5, 10, 0).tolist() == [0, 1, 2, 3, 4]
    a, b = lit.sample(1000, 50, 1), lit.sample(1000, 50, 1)
    assert np.array_equal(a, b) and len(set(a.tolist())) == 50 and not np.array_equal(a, lit.sample(1000, 50, 2))


def test_unknown_preprocessing_is_refused():
    with pytest.raises(ValueError, match="unknown preprocessing"):
        lit.lit_photo(FLAT, "nope", np.random.default_rng(0))


def test_half_light_is_a_gradient_or_vignette_to_about_half_and_sometimes_a_shadow():
    from training import lighting

    rng = np.random.default_rng(8)
    fields = [lighting.half_light_field(40, 40, rng) for _ in range(300)]
    darkest = np.array([f.min() for f in fields])
    assert np.all(darkest <= 0.6 + 1e-6) and np.all(darkest > 0.45 * 0.45 - 1e-6)  # with a shadow on top
    # without a shadow the darkest point is the fall-off's own: 0.45-0.6
    assert 0.2 < np.mean(darkest < 0.45) < 0.6  # darker than the fall-off alone: a shadow (40 %)
    assert all(f.max() <= 1.0 + 1e-6 for f in fields)
    photo = np.asarray(lit.lit_photo(np.full((28, 28), 200, np.uint8), ASL_SIGN, np.random.default_rng(9),
                                     field=lighting.half_light_field).convert("L"), dtype=float)
    assert photo.min() < 0.7 * photo.max()  # visibly unevenly lit
