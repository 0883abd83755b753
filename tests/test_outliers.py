"""Outlier exposure: non-digit drawings made for training, through the digit stem."""

from __future__ import annotations

import numpy as np
from PIL import Image

from preprocessing import find_digit
from training import outliers


def test_every_kind_draws_something_the_stem_finds():
    rng = np.random.default_rng(0)
    for name, draw in outliers.KINDS.items():
        found = 0
        for _ in range(10):
            page = draw(rng)
            assert page.shape == (outliers.SIDE, outliers.SIDE) and page.dtype == np.uint8
            assert page.min() < 100 and np.median(page) == 255  # dark strokes on a mostly white page
            found += find_digit(Image.fromarray(page)).reason is None
        assert found >= 7, name


def test_outlier_vectors_are_model_inputs_and_deterministic():
    a = outliers.outlier_vectors(30, seed=3)
    assert a.shape == (30, 784) and a.dtype == np.float32
    assert a.min() >= 0.0 and np.allclose(a.max(axis=1), 1.0)  # the stem's brightest pixel is 1
    assert np.array_equal(a, outliers.outlier_vectors(30, seed=3))
    assert not np.array_equal(a, outliers.outlier_vectors(30, seed=4))


def test_with_outliers_adds_uniform_targets_and_keeps_every_row():
    x = np.random.default_rng(1).random((50, 784), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[np.arange(50) % 10]
    x2, y2 = outliers.with_outliers(x, y, 0.2, seed=0)
    assert len(x2) == len(y2) == 60
    uniform = np.all(np.isclose(y2, 0.1), axis=1)
    assert uniform.sum() == 10
    assert np.isclose(y2.sum(axis=1), 1.0).all()
    # every original row is still there with its own label
    originals = {x[i].tobytes(): int(y[i].argmax()) for i in range(50)}
    kept = {x2[i].tobytes(): int(y2[i].argmax()) for i in np.flatnonzero(~uniform)}
    assert kept == originals
    assert outliers.with_outliers(x, y, 0.0, seed=0)[0] is x


def test_letters_leave_out_the_digit_lookalikes():
    assert not set(outliers.LETTERS) & set("OoIlSZBGgqT")
    assert set("AEFHKMNRWX") <= set(outliers.LETTERS)
