"""Temperature scaling and the expected calibration error (inference/calibration.py), on numbers
whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from inference.calibration import (
    calibrate,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
)


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def model_with_known_temperature(true_temperature: float, n: int = 20000, classes: int = 10, seed: int = 0):
    """Outputs ``softmax(z)`` of a model whose labels really follow ``softmax(z / true_temperature)``."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2.5, size=(n, classes))
    truth = softmax(z / true_temperature)
    labels = (truth.cumsum(axis=1) < rng.random((n, 1))).sum(axis=1)
    return softmax(z).astype(np.float32), labels


@pytest.mark.parametrize("true_temperature", [0.5, 1.0, 2.0, 3.5])
def test_fit_recovers_a_known_temperature(true_temperature):
    probabilities, labels = model_with_known_temperature(true_temperature)
    fitted = fit_temperature(probabilities, labels)
    assert fitted == pytest.approx(true_temperature, rel=0.05)
    best = negative_log_likelihood(probabilities, labels, fitted)
    for other in (fitted * 0.9, fitted * 1.1, 1.0):
        assert best <= negative_log_likelihood(probabilities, labels, other) + 1e-9


def test_temperature_scaling_lowers_the_ece_of_an_overconfident_model():
    probabilities, labels = model_with_known_temperature(2.0)
    before = expected_calibration_error(probabilities, labels)
    after = expected_calibration_error(calibrate(probabilities, fit_temperature(probabilities, labels)), labels)
    assert before > 0.1 and after < 0.02


def test_apply_temperature_keeps_the_ranking_and_sums_to_one():
    probabilities, _ = model_with_known_temperature(1.0, n=50)
    probabilities[0] = [1.0] + [0.0] * 9  # underflowed classes: floored, not NaN
    for temperature in (0.3, 1.0, 4.0):
        calibrated = calibrate(probabilities, temperature)
        assert np.all(np.isfinite(calibrated)) and np.allclose(calibrated.sum(axis=1), 1.0)
        assert np.array_equal(calibrated.argmax(axis=1), probabilities.argmax(axis=1))
    np.testing.assert_allclose(calibrate(probabilities, 1.0), probabilities, atol=1e-6)
    assert calibrate(probabilities, 4.0)[1].max() < probabilities[1].max()  # softer


def test_ece_of_a_hand_computed_example():
    probabilities = np.array([
        [0.9, 0.05, 0.05],  # label 0: right, confidence 0.9 -> bin (13/15, 14/15]
        [0.9, 0.1, 0.0],    # label 1: wrong, confidence 0.9 -> same bin: accuracy 1/2, confidence 0.9
        [0.2, 0.6, 0.2],    # label 1: right, confidence 0.6 -> bin (8/15, 9/15]
        [0.5, 0.3, 0.2],    # label 0: right, confidence 0.5 -> bin (7/15, 8/15]
    ])
    labels = np.array([0, 1, 1, 0])
    # 2/4 * |0.5 - 0.9| + 1/4 * |1 - 0.6| + 1/4 * |1 - 0.5| = 0.2 + 0.1 + 0.125
    assert expected_calibration_error(probabilities, labels) == pytest.approx(0.425)
    # one bin: |accuracy 3/4 - mean confidence 0.725|
    assert expected_calibration_error(probabilities, labels, bins=1) == pytest.approx(0.025)


def test_ece_of_a_calibrated_model_is_near_zero():
    probabilities, labels = model_with_known_temperature(1.0, n=50000)
    assert expected_calibration_error(probabilities, labels) < 0.01


def test_mismatched_inputs_are_refused():
    with pytest.raises(ValueError, match="do not match"):
        fit_temperature(np.full((3, 2), 0.5), np.array([0, 1]))
