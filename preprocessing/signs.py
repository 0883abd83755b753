"""A photo of a hand sign -> the Sign Language MNIST-style 28x28 input."""

from __future__ import annotations

import numpy as np
from PIL import Image

from preprocessing.decode import to_grayscale
from preprocessing.vector import IMAGE_SIDE, Extracted


def find_sign(image: Image.Image) -> Extracted:
    """The sign's 28x28 input (see ``prepare_sign``) and whether there is a hand to classify."""
    gray = image if image.mode == "L" else to_grayscale(image)
    w, h = gray.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    square = gray.crop((left, top, left + side, top + side))
    f = Image.fromarray(np.asarray(square, dtype=np.float32))
    small = f.resize((IMAGE_SIDE, IMAGE_SIDE), Image.Resampling.LANCZOS, reducing_gap=3.0)
    pixels = (np.clip(np.asarray(small, dtype=np.float32), 0, 255) / 255.0).astype(np.float32)
    return Extracted(pixels)


def prepare_sign(image: Image.Image) -> np.ndarray:
    """Normalise a hand-sign photo the way Sign Language MNIST was made.

    Grayscale, centre square crop, resize to 28x28 (Lanczos, area-antialiased
    when shrinking). No polarity change. Returns (28, 28) float32 in 0..1.
    """
    return find_sign(image).pixels
