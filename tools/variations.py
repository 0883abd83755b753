"""Handwriting variations of 28x28 test-split digits, as uploads: the same digits written with a
thinner or thicker pen, out of focus, or enlarged from a small low-resolution copy.

Never shipped with the service: ``bench/uploads.py`` measures the digit model on each set and the
tests take a few. Every set is dark ink on white paper (a scan or a screenshot of the digit), a PNG
of 200-400 px, the 28x28 tile (its own margins included) somewhere inside it with 5-25 % more
paper around it (the digit does not touch the frame's edge). Everything
random comes from the ``rng`` argument, so the same generator state gives the same bytes.

Sets (:data:`SETS`), sizes in the 28x28 image's pixels (MNIST's strokes are 1.8-3.3 px wide for 80 %
of its digits):

* ``stroke thinner`` / ``stroke thicker`` / ``stroke much thicker``: the strokes eroded by 0.5 px
  or dilated by 0.75 / 1.5 px on each side (a grey-level erosion / dilation with a disc, on a copy
  upscaled 10 times: thinner or thicker pens);
* ``blur 0.7`` / ``blur 1.2`` / ``blur 1.8``: a Gaussian blur of that sigma (a photo out of focus,
  a soft scan);
* ``low-res 14`` / ``low-res 10`` / ``low-res 8``: the digit shrunk to 14x14, 10x10 or 8x8 (area
  average) and enlarged again to the upload's size, half bicubic, half pixelated (nearest
  neighbour), as a thumbnail someone enlarged.

Cropped sets (:data:`CROPPED_SETS`, :func:`cropped`): the digit as some collections of handwritten
digits keep it, a 16x16 PNG cropped to its ink and scaled to fill the box (its shape kept, or
stretched both ways), grey or binarised, light on dark or dark on light; two of them enlarged to
256 px (as a viewer or a converter saves such a digit). Nothing random: no paper around it, and
its strokes reach the image's border.
"""

from __future__ import annotations

import io
from typing import Callable

import cv2
import numpy as np
from PIL import Image

from tools.uploads import check_pixels

SIDES = (200, 400)  # the uploads' side in pixels
MARGIN = (0.05, 0.25)  # paper around the 28x28 tile, each side, as a share of the tile
_FINE = 10  # stroke changes are made on a copy upscaled this many times


def _fine(pixels: np.ndarray) -> np.ndarray:
    """The 28x28 image (0..1 ink) upscaled ``_FINE`` times, bicubic, float32 0..1."""
    side = 28 * _FINE
    return np.clip(cv2.resize(pixels, (side, side), interpolation=cv2.INTER_CUBIC), 0.0, 1.0)


def _stroke(radius: float) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
    """Erode (radius < 0) or dilate the strokes by ``radius`` pixels of 28 on each side."""

    def change(ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        r = int(round(abs(radius) * _FINE))
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        fine = _fine(ink)
        fine = cv2.erode(fine, kernel) if radius < 0 else cv2.dilate(fine, kernel)
        return fine

    return change


def _blur(sigma: float) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
    def change(ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return cv2.GaussianBlur(_fine(ink), (0, 0), sigma * _FINE)

    return change


def _low_res(side: int) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
    def change(ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        small = cv2.resize(ink, (side, side), interpolation=cv2.INTER_AREA)
        how = cv2.INTER_CUBIC if rng.random() < 0.5 else cv2.INTER_NEAREST
        return np.clip(cv2.resize(small, (28 * _FINE, 28 * _FINE), interpolation=how), 0.0, 1.0)

    return change


#: set name -> the change (28x28 ink 0..1, rng) -> ink at a finer scale, 0..1
SETS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "stroke thinner": _stroke(-0.5),
    "stroke thicker": _stroke(0.75),
    "stroke much thicker": _stroke(1.5),
    "blur 0.7": _blur(0.7),
    "blur 1.2": _blur(1.2),
    "blur 1.8": _blur(1.8),
    "low-res 14": _low_res(14),
    "low-res 10": _low_res(10),
    "low-res 8": _low_res(8),
}


def variation(pixels28: np.ndarray, name: str, rng: np.random.Generator) -> bytes:
    """One 28x28 uint8 test-split digit (light on dark) as an upload of set ``name``: dark ink on
    white, a PNG of 200-400 px."""
    try:
        change = SETS[name]
    except KeyError:
        raise ValueError(f"unknown variation {name!r}; known: {', '.join(SETS)}") from None
    ink = change(check_pixels(pixels28).astype(np.float32) / 255.0, rng)
    side = int(rng.integers(SIDES[0], SIDES[1] + 1))
    tile = int(round(side / (1 + 2 * rng.uniform(*MARGIN))))  # the 28x28 tile, paper around it
    ink = cv2.resize(ink, (tile, tile), interpolation=cv2.INTER_AREA)
    top, left = (int(v) for v in rng.integers(0, side - tile + 1, size=2))
    ink = cv2.copyMakeBorder(ink, top, side - tile - top, left, side - tile - left, cv2.BORDER_CONSTANT, value=0)
    return _png(np.rint(255.0 * (1.0 - np.clip(ink, 0.0, 1.0))).astype(np.uint8))


def variation_uploads(images: np.ndarray, name: str, rng: np.random.Generator) -> list[bytes]:
    """``images`` (n, 28, 28 uint8) as uploads of set ``name``."""
    return [variation(image, name, rng) for image in images]


CROPPED_SIDE = 16
#: cropped set name -> (shape kept, binarised, light on dark, enlarged this many times or 1)
CROPPED_SETS: dict[str, tuple[bool, bool, bool, int]] = {
    "16x16 crop, light on dark": (True, False, True, 1),
    "16x16 crop, stretched, light on dark": (False, False, True, 1),
    "16x16 crop, binary, dark on light": (True, True, False, 1),
    "16x16 crop, binary, stretched, dark on light": (False, True, False, 1),
    "16x16 crop, light on dark, enlarged to 256 px": (True, False, True, 16),
    "16x16 crop, binary, stretched, dark on light, enlarged to 256 px": (False, True, False, 16),
}


def cropped(pixels28: np.ndarray, name: str) -> bytes:
    """One 28x28 uint8 test-split digit (light on dark) as a 16x16 PNG of set ``name``: cropped to
    its ink (above 30 of 255) and scaled to fill the box (``INTER_AREA``); an enlarged set's copy
    is then enlarged, a grey one bicubic, a binary one by repeating pixels."""
    try:
        keep_shape, binary, light_on_dark, enlarged = CROPPED_SETS[name]
    except KeyError:
        raise ValueError(f"unknown cropped set {name!r}; known: {', '.join(CROPPED_SETS)}") from None
    pixels = check_pixels(pixels28)
    ys, xs = np.nonzero(pixels > 30)
    ink = pixels[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].astype(np.float32) / 255.0
    if keep_shape:  # centred in a square of its longer side
        h, w = ink.shape
        side = max(h, w)
        ink = cv2.copyMakeBorder(ink, (side - h) // 2, side - h - (side - h) // 2, (side - w) // 2,
                                 side - w - (side - w) // 2, cv2.BORDER_CONSTANT, value=0)
    ink = cv2.resize(ink, (CROPPED_SIDE, CROPPED_SIDE), interpolation=cv2.INTER_AREA)
    if binary:
        ink = (ink > 0.5).astype(np.float32)
    if enlarged > 1:
        side = CROPPED_SIDE * enlarged
        how = cv2.INTER_NEAREST if binary else cv2.INTER_CUBIC
        ink = np.clip(cv2.resize(ink, (side, side), interpolation=how), 0.0, 1.0)
    return _png(np.rint(255.0 * (ink if light_on_dark else 1.0 - ink)).astype(np.uint8))


def _png(gray: np.ndarray) -> bytes:
    """A uint8 greyscale image as PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(gray).save(buffer, "PNG")
    return buffer.getvalue()
