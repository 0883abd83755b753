"""Turn 28x28 test-set images into realistic uploads (tests, benchmarks, load generator).

Never shipped with the service. Everything random comes from the ``rng`` argument,
so the same generator state gives the same bytes.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from preprocessing import ASL_SIGN, MNIST_DIGIT

_LOSSY = {"JPEG": (70, 95), "WEBP": (70, 95)}


def check_pixels(pixels28: np.ndarray) -> np.ndarray:
    """A 28x28 (or 784) image as uint8 28x28, clipped to 0-255; ValueError for another shape."""
    a = np.asarray(pixels28)
    if a.shape == (784,):
        a = a.reshape(28, 28)
    if a.shape != (28, 28):
        raise ValueError(f"expected a 28x28 image, got shape {a.shape}")
    return np.clip(a, 0, 255).astype(np.uint8)


def _encode(img: Image.Image, fmt: str, rng: np.random.Generator | None) -> bytes:
    fmt = fmt.upper()
    if fmt == "JPG":
        fmt = "JPEG"
    buf = io.BytesIO()
    if fmt in _LOSSY:
        lo, hi = _LOSSY[fmt]
        quality = int(rng.integers(lo, hi + 1)) if rng is not None else 90
        img.save(buf, fmt, quality=quality)
    else:
        img.save(buf, fmt)
    return buf.getvalue()


def encode_plain(pixels28: np.ndarray, fmt: str = "PNG") -> bytes:
    """The raw 28x28 grayscale image as a file in ``fmt`` (lossy formats at quality 90)."""
    return _encode(Image.fromarray(check_pixels(pixels28)), fmt, None)


def _upscale(a: np.ndarray, width: int, height: int) -> np.ndarray:
    img = Image.fromarray(a.astype(np.float32))
    return np.asarray(img.resize((width, height), Image.Resampling.BICUBIC), dtype=np.float32)


def _dress_digit(pixels: np.ndarray, rng: np.random.Generator) -> Image.Image:
    # Frame of paper, random size and aspect.
    fw, fh = (int(v) for v in rng.integers(150, 601, size=2))
    # Digit tile (the whole 28x28, margins included) at a random scale.
    side = int(min(fw, fh) * rng.uniform(0.45, 0.95))
    ink = np.clip(_upscale(pixels / 255.0, side, side), 0.0, 1.0)
    angle = float(rng.uniform(-8, 8))
    ink_img = Image.fromarray(ink).rotate(angle, Image.Resampling.BICUBIC, expand=True)
    ink = np.clip(np.asarray(ink_img, dtype=np.float32), 0.0, 1.0)
    th, tw = ink.shape
    top = int(rng.integers(0, max(1, fh - th) + 1))
    left = int(rng.integers(0, max(1, fw - tw) + 1))
    mask = np.zeros((fh, fw), dtype=np.float32)
    src = ink[: fh - top, : fw - left]
    mask[top : top + src.shape[0], left : left + src.shape[1]] = src

    # Slightly grey paper with a linear lighting gradient, dark ink.
    yy, xx = np.mgrid[0:fh, 0:fw].astype(np.float32)
    theta = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(theta) * (xx / fw - 0.5) + np.sin(theta) * (yy / fh - 0.5))
    paper = rng.uniform(185, 245) + rng.uniform(0, 30) * ramp
    ink_level = rng.uniform(10, 70)
    gray = paper - (paper - ink_level) * mask
    gray = gray + rng.normal(0, rng.uniform(1.5, 5.0), size=gray.shape)

    if rng.random() < 0.5:
        tint = rng.uniform(0.92, 1.0, size=3)  # warm/cool paper cast
        rgb = np.clip(gray[..., None] * tint, 0, 255)
        return Image.fromarray(np.rint(rgb).astype(np.uint8), "RGB")
    return Image.fromarray(np.rint(np.clip(gray, 0, 255)).astype(np.uint8))


def _dress_sign(pixels: np.ndarray, rng: np.random.Generator) -> Image.Image:
    side = int(rng.integers(200, 501))
    a = _upscale(pixels.astype(np.float32), side, side)
    contrast, brightness = rng.uniform(0.85, 1.15), rng.uniform(-15, 15)
    a = (a - 128.0) * contrast + 128.0 + brightness
    a = a + rng.normal(0, rng.uniform(1.0, 4.0), size=a.shape)
    # Extend to a non-square frame with equal margins on both sides (copies
    # of the edge), so the centre square crop gives back exactly the hand.
    margin = int(side * rng.uniform(0.0, 0.25))
    if rng.random() < 0.5:
        a = np.pad(a, ((0, 0), (margin, margin)), mode="edge")
    else:
        a = np.pad(a, ((margin, margin), (0, 0)), mode="edge")
    tint = rng.uniform(0.9, 1.1, size=3)
    tint /= tint @ np.array([0.299, 0.587, 0.114])  # keep luminance
    rgb = np.clip(a[..., None] * tint, 0, 255)
    return Image.fromarray(np.rint(rgb).astype(np.uint8), "RGB")


def dress_as_upload(
    pixels28: np.ndarray, kind: str, rng: np.random.Generator, *, fmt: str = "PNG"
) -> bytes:
    """Turn a 28x28 uint8 test-set image into what a user would really upload.

    ``kind`` is a preprocessing name. MNIST_DIGIT: dark ink on light, slightly
    grey, unevenly lit paper; digit at a random scale, position (off-centre)
    and rotation (<= 8 deg) in a 150..600 px frame; mild noise; L or RGB.
    ASL_SIGN: upscaled to 200..500 px with brightness/contrast jitter, noise
    and a colour tint, padded (edge pixels) to a non-square frame whose centre
    square is the original hand; RGB.

    ``fmt`` is a Pillow format name (JPEG/WEBP get a random quality 70..95),
    or "random" for PNG or JPEG. Deterministic for a given ``rng`` state.
    """
    pixels = check_pixels(pixels28)
    if kind == MNIST_DIGIT:
        img = _dress_digit(pixels, rng)
    elif kind == ASL_SIGN:
        img = _dress_sign(pixels, rng)
    else:
        raise ValueError(f"unknown kind {kind!r}; expected {MNIST_DIGIT!r} or {ASL_SIGN!r}")
    if fmt.lower() == "random":
        fmt = "PNG" if rng.random() < 0.5 else "JPEG"
    return _encode(img, fmt, rng)
