"""The models' input: a flat float32 vector of 28*28 = 784 pixels in 0..1 (pixel / 255)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

IMAGE_SIDE = 28
VECTOR_LENGTH = IMAGE_SIDE * IMAGE_SIDE


@dataclass(frozen=True)
class Extracted:
    """What a preprocessor made of an image: the 28x28 input and, when there is nothing to classify
    (a blank page, no ink or hand of plausible size), why in words (``reason``; None when found)."""

    pixels: np.ndarray  # (28, 28) float32 in 0..1
    reason: str | None = None

    @property
    def found(self) -> bool:
        return self.reason is None


def pixels_to_model_input(pixels) -> np.ndarray:
    """Convert 0..255 pixels of shape (n, 28, 28) or (n, 784) to float32 (n, 784) in 0..1."""
    a = np.asarray(pixels)
    if a.dtype == np.bool_ or not (
        np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)
    ):
        raise ValueError(f"pixels must be a numeric array of 0..255 values, got dtype {a.dtype}")
    if not (
        (a.ndim == 3 and a.shape[1:] == (IMAGE_SIDE, IMAGE_SIDE))
        or (a.ndim == 2 and a.shape[1] == VECTOR_LENGTH)
    ):
        raise ValueError(
            f"pixels must have shape (n, 28, 28) or (n, 784), got {tuple(a.shape)}"
        )
    if a.size:
        if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
            raise ValueError("pixels contain NaN or infinite values")
        lo, hi = a.min(), a.max()
        if lo < 0 or hi > 255:
            raise ValueError(f"pixel values must be in 0..255, got range {lo}..{hi}")
    return (a.reshape(a.shape[0], VECTOR_LENGTH).astype(np.float32)) / np.float32(255)


@lru_cache(maxsize=8)
def blur_matrix(side: int, sigma: float) -> np.ndarray:
    """(side, side) float32 whose row *i* holds the Gaussian weights around pixel *i* (``sigma``
    pixels, cut at 3 sigma), scaled to sum to one over the pixels inside the frame: ``G @ X @ G.T``
    blurs a (side, side) image ``X`` without darkening its border (a normalised convolution)."""
    radius = int(np.ceil(3 * sigma))
    offsets = (np.arange(side)[None, :] - np.arange(side)[:, None]).astype(np.float64)
    weights = np.where(np.abs(offsets) <= radius, np.exp(-offsets ** 2 / (2 * sigma ** 2)), 0.0)
    matrix = (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)
    matrix.flags.writeable = False  # cached and shared: built once per (side, sigma), not per call
    return matrix


def local_contrast(vectors: np.ndarray, sigma: float, epsilon: float) -> np.ndarray:
    """(n, 784) inputs, each pixel divided by the image blurred over ``sigma`` pixels plus
    ``epsilon``: numpy's form of the sign model's ``LocalContrast`` layer (``execution.layers``),
    for forward passes without Keras."""
    images = np.asarray(vectors, dtype=np.float32).reshape(-1, IMAGE_SIDE, IMAGE_SIDE)
    g = blur_matrix(IMAGE_SIDE, sigma)
    return (images / (g @ images @ g.T + np.float32(epsilon))).reshape(len(images), VECTOR_LENGTH)

