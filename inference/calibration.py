"""Temperature scaling of a trained classifier: how the service applies it, how training fits it,
and the expected calibration error that judges it. The one home of this maths (training, the
service and the benchmarks import it from here).

The stored model's output ``p`` stays as it is; the temperature ``T`` is fitted afterwards on the
validation split and kept in the model's metadata (``catalog.metadata.Calibration``). Calibrated
probabilities are ``softmax(log(p) / T)``: ``T > 1`` softens an overconfident model, ``T < 1``
sharpens an underconfident one, and the ranking of the classes (so the accuracy) never changes.
Probabilities that underflowed to 0 are taken as float32's smallest normal number before the log.
"""

from __future__ import annotations

import numpy as np

from catalog import ModelMetadata

#: Where float32 softmax outputs underflow to 0, log(p) is taken at the smallest normal float32:
#: a log-probability of -87, far below anything that matters after the temperature.
PROBABILITY_FLOOR = float(np.finfo(np.float32).tiny)

#: Bins of the expected calibration error: 15 of equal width over the top-label confidence.
ECE_BINS = 15
# The search keeps 1/T within these bounds (T from 0.01 to 100).
_INVERSE_T_BOUNDS = (0.01, 100.0)


def logits_of(probabilities: np.ndarray) -> np.ndarray:
    """``log(p)`` (float64), with ``p`` floored at :data:`PROBABILITY_FLOOR`."""
    return np.log(np.clip(np.asarray(probabilities, dtype=np.float64), PROBABILITY_FLOOR, 1.0))


def calibrate(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """Temperature scaling of softmax outputs: ``softmax(log(p) / temperature)`` row by row, in float32.

    ``log(p)`` differs from the model's logits by a constant per row, so this equals
    ``softmax(logits / temperature)``. A temperature of 1 returns ``probabilities`` unchanged.
    """
    if temperature == 1.0:
        return probabilities
    z = np.log(np.maximum(np.asarray(probabilities, dtype=np.float32), PROBABILITY_FLOOR))
    z /= temperature
    z -= z.max(axis=-1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=-1, keepdims=True)
    return z


def temperature_of(metadata: ModelMetadata) -> float:
    """The temperature of a model's calibration; 1 (no change) for a model stored without one."""
    return metadata.calibration.temperature if metadata.calibration is not None else 1.0


def negative_log_likelihood(probabilities: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean NLL of the true class indices ``labels`` under ``softmax(log(p) / temperature)``."""
    calibrated = calibrate(np.asarray(probabilities, dtype=np.float32), float(temperature))
    picked = calibrated[np.arange(len(labels)), np.asarray(labels)]
    return float(-np.mean(np.log(np.maximum(picked, 1e-300))))


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray, iterations: int = 50) -> float:
    """The temperature minimising the NLL of ``labels`` (class indices) given the model's ``probabilities``.

    The NLL is convex in the inverse temperature ``b = 1/T`` (a log-sum-exp of ``b * logits`` minus a
    linear term), so Newton's method on ``b`` from ``b = 1``, with step halving whenever a step would
    raise the NLL, finds the minimum in a few steps.
    """
    z = logits_of(probabilities)
    labels = np.asarray(labels)
    if z.ndim != 2 or len(z) != len(labels) or len(z) == 0:
        raise ValueError(f"probabilities {z.shape} and labels {labels.shape} do not match")
    true = z[np.arange(len(z)), labels]
    low, high = _INVERSE_T_BOUNDS

    def nll_gradient_curvature(b: float) -> tuple[float, float, float]:
        s = b * z
        top = s.max(axis=1, keepdims=True)
        exp = np.exp(s - top)
        total = exp.sum(axis=1, keepdims=True)
        p = exp / total
        mean_z = (p * z).sum(axis=1)
        nll = float(np.mean(np.log(total[:, 0]) + top[:, 0] - b * true))
        gradient = float(np.mean(mean_z - true))
        curvature = float(np.mean((p * z * z).sum(axis=1) - mean_z**2))
        return nll, gradient, curvature

    b = 1.0
    nll, gradient, curvature = nll_gradient_curvature(b)
    for _ in range(iterations):
        if abs(gradient) < 1e-10:
            break
        step = -gradient / curvature if curvature > 1e-12 else -np.sign(gradient) * 0.5 * b
        while True:
            candidate = float(np.clip(b + step, low, high))
            new = nll_gradient_curvature(candidate)
            if new[0] <= nll + 1e-12 or abs(step) < 1e-9:
                break
            step /= 2
        if abs(candidate - b) < 1e-9:
            break
        b, (nll, gradient, curvature) = candidate, new
    return 1.0 / b


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """Top-label expected calibration error: the examples binned by their top probability into
    ``bins`` equal-width bins ``(k/bins, (k+1)/bins]``; the mean over bins, weighted by their share of
    examples, of |accuracy - mean confidence| in the bin. A fraction (0.015 = 1.5 %)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    error = 0.0
    for k in range(bins):
        members = which == k
        if members.any():
            error += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(error)
