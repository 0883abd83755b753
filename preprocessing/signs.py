"""A photo of a hand sign -> the Sign Language MNIST-style 28x28 input."""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from preprocessing.decode import to_grayscale
from preprocessing.vector import IMAGE_SIDE, Extracted

# Fine detail (std of the 28x28 input minus its Gaussian blur, sigma 1 px) below which a frame has
# no hand: every Sign Language MNIST image (train and test) has at least 0.017, unevenly lit sign
# photos (tools/photos.py) at least 0.013; plain walls and backdrops under the same light 0.01 or less.
_MIN_DETAIL = 0.011


def find_sign(image: Image.Image) -> Extracted:
    """The sign's 28x28 input (see ``prepare_sign``) and whether there is a hand to classify.

    A frame with almost no fine detail (a wall, a backdrop, a lens cap) has none; a smooth shadow
    with a crisp edge does count as a shape, since nothing here knows what a hand looks like.
    """
    gray = image if image.mode == "L" else to_grayscale(image)
    w, h = gray.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    square = gray.crop((left, top, left + side, top + side))
    f = Image.fromarray(np.asarray(square, dtype=np.float32))
    small = f.resize((IMAGE_SIDE, IMAGE_SIDE), Image.Resampling.LANCZOS, reducing_gap=3.0)
    pixels = (np.clip(np.asarray(small, dtype=np.float32), 0, 255) / 255.0).astype(np.float32)
    detail = float(cv2.meanStdDev(pixels - cv2.GaussianBlur(pixels, (0, 0), 1.0))[1][0, 0])
    if detail < _MIN_DETAIL:
        return Extracted(pixels, "no hand found: the frame is almost uniform (no edges or shapes)")
    return Extracted(pixels)


def prepare_sign(image: Image.Image) -> np.ndarray:
    """Normalise a hand-sign photo the way Sign Language MNIST was made.

    Grayscale, centre square crop, resize to 28x28 (Lanczos, area-antialiased when shrinking).
    No polarity change and no evening-out of the light here: the sign model does that itself, as
    its first layer (``execution.layers.LocalContrast``, trained with it); a flat field at serving
    time only would be a training/serving skew (docs/photos.md). Returns (28, 28) float32 in 0..1.
    """
    return find_sign(image).pixels
