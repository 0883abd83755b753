"""Image preprocessing shared by training and serving: the one place an image becomes a model's input.

* :mod:`.vector`: the input itself (28x28 = 784 floats in 0..1) and training data -> input;
* :mod:`.decode`: uploaded bytes -> a greyscale image, within limits;
* :mod:`.digits`, :mod:`.signs`: a decoded image -> the 28x28 input the way MNIST / Sign Language
  MNIST were made, and whether there is anything to classify (digits: OpenCV ink extraction that
  evens out the light, takes away paper lines and specks; see docs/photos.md).

``PREPROCESSORS`` maps the preprocessing id stored in a model's metadata (``MNIST_DIGIT`` /
``ASL_SIGN``, named by the catalog's families) to its function (``FINDERS``: the same with
found / reason); ``prepare_upload`` does decode + preprocess and says whether anything was found
(``image_to_vector``: the vector only). The ids are a stable contract with the stored models: do
not rename them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image

from preprocessing.decode import (
    ACCEPTED_FORMATS,
    BatchTooCostly,
    DEFAULT_MAX_JPEG_PIXELS,
    DEFAULT_MAX_PIXELS,
    Declared,
    ImageError,
    ImageTooLarge,
    decode_image,
    inspect_image,
    to_grayscale,
)
from preprocessing.digits import find_digit, prepare_digit
from preprocessing.signs import find_sign, prepare_sign
from preprocessing.vector import IMAGE_SIDE, VECTOR_LENGTH, Extracted, pixels_to_model_input

MNIST_DIGIT = "mnist_digit"
ASL_SIGN = "asl_sign"

__all__ = [
    "ACCEPTED_FORMATS", "ASL_SIGN", "BatchTooCostly", "DEFAULT_MAX_JPEG_PIXELS", "DEFAULT_MAX_PIXELS", "Declared", "FINDERS",
    "IMAGE_SIDE", "MNIST_DIGIT", "PREPROCESSORS", "VECTOR_LENGTH", "Extracted", "ImageError", "ImageTooLarge",
    "Prepared", "decode_image", "find_digit", "find_sign", "image_to_vector", "inspect_image", "prepare_upload",
    "pixels_to_model_input", "prepare_digit", "prepare_sign", "to_grayscale",
]

PREPROCESSORS: dict[str, Callable[[Image.Image], np.ndarray]] = {
    MNIST_DIGIT: prepare_digit,
    ASL_SIGN: prepare_sign,
}

#: The same, with whether anything was found and why not (``Extracted``).
FINDERS: dict[str, Callable[[Image.Image], Extracted]] = {
    MNIST_DIGIT: find_digit,
    ASL_SIGN: find_sign,
}


@dataclass(frozen=True)
class Prepared:
    """An upload made ready for a model: its input vector, and whether there is anything to classify.

    ``found`` is False for a blank or near-blank image (no ink, no hand of plausible size); then
    ``reason`` says why in words and ``vector`` is all zeros for digits (nothing was left) and
    the frame as the model would see it for signs.
    """

    vector: np.ndarray  # float32 (784,) in 0..1
    found: bool = True
    reason: str | None = None


def prepare_upload(data: bytes, preprocessing: str, *, max_pixels: int = DEFAULT_MAX_PIXELS,
                   max_jpeg_pixels: int = DEFAULT_MAX_JPEG_PIXELS, declared: Declared | None = None) -> Prepared:
    """Decode an upload and preprocess it for a model (``preprocessing``: the id in its metadata).

    An unknown id is a programming error (ValueError), checked before decoding. Raises
    ImageError / ImageTooLarge for bad uploads. ``declared``: the upload's header as
    ``inspect_image`` read it under the same limits, so that it is not read again (else the
    decode reads it).
    """
    try:
        find = FINDERS[preprocessing]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown preprocessing {preprocessing!r}; known: {sorted(PREPROCESSORS)}"
        ) from None
    image = decode_image(data, max_pixels=max_pixels, max_jpeg_pixels=max_jpeg_pixels, declared=declared)
    extracted = find(image)
    vector = extracted.pixels.reshape(VECTOR_LENGTH).astype(np.float32, copy=False)
    if extracted.reason is None and not vector.any():
        return Prepared(vector, False, "the image is blank: nothing to classify")
    return Prepared(vector, extracted.reason is None, extracted.reason)


def image_to_vector(data: bytes, preprocessing: str, **limits: int) -> np.ndarray:
    """Decode an upload and preprocess it for a model -> float32 (784,) in 0..1 (see ``prepare_upload``)."""
    return prepare_upload(data, preprocessing, **limits).vector
