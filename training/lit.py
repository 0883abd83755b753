"""Lit evaluation sets: data-set images turned into photo uploads under uneven light, answered
by the family's :class:`inference.Classifier` as the service would answer them.

A 28x28 image becomes a 160-400 px photo (bicubic upscale), is multiplied by one of
:mod:`training.lighting`'s illumination fields (gradient, vignette, soft shadow, alone or
combined), gets sensor noise and a colour cast and is encoded as JPEG (quality 75-95) or PNG.
Signs are photographed as they are (the hand fills the frame); digits as dark ink on light,
slightly grey paper, the way people photograph a handwritten digit. The fields are the
evaluation ones, not the training augmentation's (``training.models.RandomLighting`` draws its
own), so the lit accuracy measures what the model was not shown verbatim.
"""

from __future__ import annotations

import io
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from preprocessing import ASL_SIGN, MNIST_DIGIT
from training import lighting

PHOTO_SIDES = (160, 400)


def _upscale(pixels: np.ndarray, side: int) -> np.ndarray:
    image = Image.fromarray(pixels.astype(np.float32))
    return np.asarray(image.resize((side, side), Image.Resampling.BICUBIC), dtype=np.float32)


Field = Callable[[int, int, np.random.Generator], np.ndarray]


def lit_photo(pixels28: np.ndarray, preprocessing: str, rng: np.random.Generator,
              kinds: tuple[str, ...] = lighting.KINDS, field: Field | None = None) -> Image.Image:
    """One data-set image (28x28 uint8, as in the data set) as an unevenly lit RGB photo: under
    ``field(h, w, rng)`` when given (e.g. ``lighting.half_light_field``), else a field of one or
    more of ``kinds``."""
    side = int(rng.integers(PHOTO_SIDES[0], PHOTO_SIDES[1] + 1))
    pixels = np.asarray(pixels28, dtype=np.float32).reshape(28, 28)
    if preprocessing == ASL_SIGN:
        scene = np.clip(_upscale(pixels, side), 0, 255)
    elif preprocessing == MNIST_DIGIT:  # light-on-dark digit -> dark ink on paper
        ink = np.clip(_upscale(pixels / 255.0, side), 0.0, 1.0)
        paper, ink_level = rng.uniform(190, 240), rng.uniform(15, 70)
        scene = paper - (paper - ink_level) * ink
    else:
        raise ValueError(f"unknown preprocessing {preprocessing!r}; expected {ASL_SIGN!r} or {MNIST_DIGIT!r}")
    scene = scene * (field(side, side, rng) if field else lighting.random_field(side, side, rng, kinds))
    scene = scene + rng.normal(0, rng.uniform(1.0, 3.0), size=scene.shape)
    tint = rng.uniform(0.92, 1.08, size=3)
    tint /= tint @ np.array([0.299, 0.587, 0.114])  # a colour cast that keeps the luminance
    rgb = np.clip(np.rint(scene[..., None] * tint), 0, 255).astype(np.uint8)
    return Image.fromarray(rgb, "RGB")


def lit_upload(pixels28: np.ndarray, preprocessing: str, rng: np.random.Generator,
               kinds: tuple[str, ...] = lighting.KINDS, field: Field | None = None) -> bytes:
    """:func:`lit_photo` encoded as a user would send it: JPEG (quality 75-95) or PNG, half each."""
    buffer = io.BytesIO()
    photo = lit_photo(pixels28, preprocessing, rng, kinds, field)
    if rng.random() < 0.5:
        photo.save(buffer, "JPEG", quality=int(rng.integers(75, 96)))
    else:
        photo.save(buffer, "PNG")
    return buffer.getvalue()


def lit_uploads(images: np.ndarray, preprocessing: str, seed: int = 0,
                kinds: tuple[str, ...] = lighting.KINDS, field: Field | None = None) -> list[bytes]:
    """``images`` (n, 28, 28 uint8) photographed under uneven light, as encoded uploads
    (:func:`lit_upload`). Deterministic for a seed."""
    rng = np.random.default_rng(seed)
    return [lit_upload(image, preprocessing, rng, kinds, field) for image in images]


def accuracy(answers: Sequence[dict], labels: np.ndarray) -> float:
    """Share of a Classifier's ``answers`` whose ``index`` is the label (class index). An answer
    with ``found: false`` counts as wrong: the service would give no label for that photo."""
    return float(np.mean([a["found"] and a["index"] == int(y) for a, y in zip(answers, labels, strict=True)]))


def sample(n_total: int, n: int, seed: int) -> np.ndarray:
    """Indices of a random sample of ``n`` of ``n_total`` (all of them, in order, when n >= n_total)."""
    if n >= n_total:
        return np.arange(n_total)
    return np.sort(np.random.default_rng(seed).choice(n_total, size=n, replace=False))
