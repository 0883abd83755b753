"""Uploaded image bytes -> model input vector.

This is the one place where training data and served images meet: the models
take a float32 vector of 28*28 = 784 pixels in 0..1 (pixel / 255), and for
MNIST light ink on a dark background, exactly like the training data.

The preprocessing *names* (``MNIST_DIGIT``, ``ASL_SIGN``) are stored in the
trained model's metadata and looked up in ``PREPROCESSORS`` by the service, so
they are a stable contract: do not rename them.
"""

from __future__ import annotations

import io
import math
import re
import warnings
from typing import Callable

import numpy as np
from PIL import Image, ImageOps

MNIST_DIGIT = "mnist_digit"
ASL_SIGN = "asl_sign"

IMAGE_SIDE = 28
VECTOR_LENGTH = IMAGE_SIDE * IMAGE_SIDE
DEFAULT_MAX_PIXELS = 40_000_000

#: Pillow format ids we decode; everything else is refused.
ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF")

_UNREADABLE = "the file is not an image we can read (PNG, JPEG, WebP, BMP, GIF, TIFF)"
_DAMAGED = (
    "the image file is damaged or incomplete (truncated?) and could not be decoded"
)

# prepare_digit parameters (see its docstring).
_DIGIT_BOX = 20  # MNIST fits the digit into 20x20 ...
_DIGIT_CENTRE = 14.0  # ... and puts its centre of mass at pixel (14, 14).
_WORK_MAX_SIDE = 1024  # larger uploads are box-reduced first (speed only)
_MIN_INK_CONTRAST = 0.08  # below this (fraction of 0..255) the image is blank
_INK_FRACTION = 0.1  # pixels above this fraction of the max are ink for the bbox


class ImageError(ValueError):
    """The upload is not a usable image (HTTP 400). The message is for the user."""

    status_code = 400


class ImageTooLarge(ImageError):
    """The upload's dimensions exceed the pixel limit (HTTP 413)."""

    status_code = 413


# --------------------------------------------------------------------------
# training data


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


# --------------------------------------------------------------------------
# decoding


def _format_pixels(n: int) -> str:
    if n >= 1_000_000:
        mp = n / 1_000_000
        return f"{mp:.3g} megapixels" if mp < 1000 else f"{mp:,.0f} megapixels"
    return f"{n:,} pixels"


def _too_large(width: int, height: int, limit: int) -> ImageTooLarge:
    return ImageTooLarge(
        f"image is {width}×{height} = {_format_pixels(width * height)}; "
        f"the limit is {_format_pixels(limit)}"
    )


def _too_large_from_pillow(exc: Exception, max_pixels: int) -> ImageTooLarge:
    # Pillow's own bomb check fires inside Image.open, before we see .size;
    # its message carries the pixel count.
    pillow_limit = Image.MAX_IMAGE_PIXELS or max_pixels
    limit = min(max_pixels, pillow_limit)
    m = re.search(r"\((\d+) pixels\)", str(exc))
    if m:
        return ImageTooLarge(
            f"image is {_format_pixels(int(m.group(1)))}; the limit is {_format_pixels(limit)}"
        )
    return ImageTooLarge(f"image is too large; the limit is {_format_pixels(limit)}")


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode uploaded bytes into a single-channel 'L' image.

    Accepts PNG, JPEG, WebP, BMP, GIF (first frame) and TIFF (first page) in
    any pixel mode; applies the EXIF orientation; flattens transparency (see
    ``to_grayscale``). Raises ``ImageError`` (400) for anything unreadable,
    truncated or of another format, and ``ImageTooLarge`` (413) when
    width*height exceeds ``max_pixels`` -- checked from the header, before
    any pixel data is decoded. (Pillow's own, larger, bomb limit
    ``Image.MAX_IMAGE_PIXELS`` also ends in ImageTooLarge if it trips first.)
    """
    if isinstance(data, (bytearray, memoryview)):
        data = bytes(data)
    if not isinstance(data, bytes):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    if not data:
        raise ImageError("the file is empty; " + _UNREADABLE.replace("the file is ", "expected "))
    # Pillow warns (and past 2x its limit raises) about decompression bombs on
    # its own; turn both into ImageTooLarge instead of letting them escape.
    # (catch_warnings is process-global in Python < 3.14; the worst a race can
    # do is leave this one warning category set to "error", which we catch.)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise _too_large_from_pillow(exc, max_pixels) from None
        except Exception as exc:  # any parser failure on untrusted bytes
            raise ImageError(_UNREADABLE) from exc
        with img:
            width, height = img.size
            if width <= 0 or height <= 0:
                raise ImageError(_UNREADABLE)
            if width * height > max_pixels:
                raise _too_large(width, height, max_pixels)
            try:
                img.load()
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
                raise _too_large_from_pillow(exc, max_pixels) from None
            except Exception as exc:
                raise ImageError(_DAMAGED) from exc
            try:
                oriented = ImageOps.exif_transpose(img)
            except Exception:  # malformed EXIF: keep the stored orientation
                oriented = img
            try:
                return to_grayscale(oriented)
            except Exception as exc:
                raise ImageError(_UNREADABLE) from exc


def _high_depth_to_l(img: Image.Image) -> Image.Image:
    """16-bit / 32-bit int / float pixels -> 8-bit by scaling (never clipping).

    I;16*: 0..65535 -> 0..255. I and F: values already in 0..255 are kept,
    0..65535 is scaled like 16 bit, F in 0..1 is taken as 0..1 intensity,
    anything else (negative, larger) is stretched min..max to 0..255.
    """
    mode = img.mode
    a = np.asarray(img if mode in ("I", "F") else img.convert("I"), dtype=np.float64)
    if mode == "F":
        finite = np.isfinite(a)
        if not finite.any():
            return Image.new("L", img.size, 0)
        lo, hi = float(a[finite].min()), float(a[finite].max())
        a = np.nan_to_num(a, nan=lo, posinf=hi, neginf=lo)
    else:
        lo, hi = float(a.min()), float(a.max())
    if mode.startswith("I;16"):
        a = a * (255.0 / 65535.0)
    elif mode == "F" and lo >= 0 and hi <= 1:
        a = a * 255.0
    elif lo >= 0 and hi <= 255:
        pass
    elif lo >= 0 and hi <= 65535:
        a = a * (255.0 / 65535.0)
    else:
        a = (a - lo) * (255.0 / (hi - lo))
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8))


def _has_transparency(img: Image.Image) -> bool:
    return "A" in img.getbands() or "a" in img.getbands() or (
        img.info.get("transparency") is not None and img.mode in ("P", "L", "RGB")
    )


def _flatten_transparency(img: Image.Image) -> Image.Image:
    """Composite onto black or white, whichever contrasts with the opaque content.

    Rule: take the median luminance of the (mostly) opaque pixels (alpha >= 50%);
    if it is dark (< 128) the background becomes white, otherwise black. So a
    dark digit drawn on a transparent canvas ends up dark-on-white and a light
    one light-on-black, whatever colour the invisible pixels happen to store.
    """
    if img.mode == "La":  # premultiplied; Pillow has no La -> RGBA conversion
        img = img.convert("LA")
    rgba = img.convert("RGBA")  # also resolves P/L/RGB 'transparency' and RGBa
    lum = np.asarray(rgba.convert("RGB").convert("L"), dtype=np.float32)
    alpha = np.asarray(rgba.getchannel("A"), dtype=np.float32) / 255.0
    opaque = alpha >= 0.5
    if opaque.any():
        ref = float(np.median(lum[opaque]))
    elif alpha.sum() > 0:
        ref = float((lum * alpha).sum() / alpha.sum())
    else:
        ref = 0.0
    background = 255.0 if ref < 128 else 0.0
    out = alpha * lum + (1.0 - alpha) * background
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8))


def to_grayscale(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> 'L' (8-bit luminance), flattening transparency."""
    mode = img.mode
    if mode == "L" and img.info.get("transparency") is None:
        return img.copy()
    if mode == "1":
        return img.convert("L")
    if mode == "I" or mode == "F" or mode.startswith("I;16"):
        return _high_depth_to_l(img)
    if _has_transparency(img):
        return _flatten_transparency(img)
    if mode in ("L", "P", "RGB"):
        return img.convert("L")
    return img.convert("RGB").convert("L")  # CMYK, YCbCr, LAB, HSV, RGBX, ...


# --------------------------------------------------------------------------
# per-model preprocessing


def _edge_padded(a: np.ndarray) -> np.ndarray:
    """``a`` with a one-pixel border repeating its edge (np.pad's "edge" mode, without its
    per-call overhead, which dominated on 28x28 uploads)."""
    h, w = a.shape
    p = np.empty((h + 2, w + 2), a.dtype)
    p[1:-1, 1:-1] = a
    p[0, 1:-1], p[-1, 1:-1] = a[0], a[-1]
    p[:, 0], p[:, -1] = p[:, 1], p[:, -2]
    return p


def _sum3x3(p: np.ndarray) -> np.ndarray:
    """Sum over every 3x3 window of ``p`` (valid part: 2 smaller in each dimension), separably."""
    rows = p[:-2] + p[1:-1]
    rows += p[2:]
    total = rows[:, :-2] + rows[:, 1:-1]
    total += rows[:, 2:]
    return total


def _box3(a: np.ndarray) -> np.ndarray:
    """3x3 mean filter (edge-padded)."""
    total = _sum3x3(_edge_padded(a))
    total /= 9.0
    return total


def _median(x: np.ndarray) -> float:
    """np.median of a 1-d float array (same value), at a fraction of its per-call cost."""
    n = x.size
    k = n // 2
    if n % 2:
        return float(np.partition(x, k)[k])
    part = np.partition(x, (k - 1, k))
    return float((part[k - 1] + part[k]) / 2)


def _percentile(x: np.ndarray, q: float) -> float:
    """np.percentile(x, q) of a 1-d float array, default "linear" method (same value)."""
    n = x.size
    quantile = q / 100
    virtual = n * quantile + (1 + quantile * -1) - 1
    below = min(max(math.floor(virtual), 0), n - 1)
    above = min(below + 1, n - 1)
    part = np.partition(x, (below, above))
    a, b = part[below], part[above]
    t = virtual - below
    diff = b - a
    return float(b - diff * (1 - t) if t >= 0.5 else a + diff * t)


def _border(a: np.ndarray) -> np.ndarray:
    h, w = a.shape
    b = max(1, round(min(h, w) * 0.03))
    if 2 * b >= min(h, w):
        return a.ravel()
    return np.concatenate(
        [a[:b].ravel(), a[-b:].ravel(), a[b:-b, :b].ravel(), a[b:-b, -b:].ravel()]
    )


def _work_array(image: Image.Image) -> np.ndarray:
    gray = image if image.mode == "L" else to_grayscale(image)
    side = max(gray.size)
    if side > _WORK_MAX_SIDE:
        gray = gray.reduce(math.ceil(side / _WORK_MAX_SIDE))
    a = np.array(gray, dtype=np.float32)
    a /= 255.0  # in place (large uploads: one pass and one array fewer)
    return a


def _ink_bbox(a: np.ndarray, peak=None) -> tuple[int, int, int, int] | None:
    """Bounding box (y0, y1, x0, x1) of the ink, ignoring isolated specks (``peak``: a.max())."""
    mask = a > _INK_FRACTION * (a.max() if peak is None else peak)
    # a pixel counts if at least two of its 8 neighbours are ink too: drops
    # single-pixel noise and specks but keeps 1-px-wide strokes
    h, w = mask.shape
    p = np.zeros((h + 2, w + 2), np.int8)
    p[1:-1, 1:-1] = mask
    mask &= _sum3x3(p) >= 3
    if not mask.any():
        return None  # only specks: no ink
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return rows[0], rows[-1] + 1, cols[0], cols[-1] + 1


def prepare_digit(image: Image.Image) -> np.ndarray:
    """Normalise a digit image the way MNIST was made -> (28, 28) float32 in 0..1.

    1. Polarity: the background level is the median of a thin border band;
       if the image's dark extreme is further from it than its light extreme,
       the ink is dark (paper scan / photo) and the image is inverted, so the
       result is always light ink on a dark background.
    2. Background removal: subtract a robust upper level of the border
       (median + 5 MAD, at most its 99th percentile) so grey or unevenly lit
       paper and JPEG noise go to 0.
    3. Crop to the ink's bounding box (pixels above 10% of the max, isolated
       specks ignored; specks alone count as blank), fit it into 20x20 keeping the aspect ratio (Lanczos,
       i.e. area-antialiased downsampling), and paste it into 28x28 so that
       its centre of mass lies at pixel (14, 14) (integer shift, as MNIST).
    4. Scale so the brightest pixel is 1.

    An image without ink (contrast below 8% of full scale) gives all zeros.
    """
    a = _work_array(image)
    out = np.zeros((IMAGE_SIDE, IMAGE_SIDE), dtype=np.float32)

    smooth = _box3(a)  # decisions on a smoothed copy: robust to noise pixels
    bg = _median(_border(smooth))
    lo, hi = float(smooth.min()), float(smooth.max())
    dark_ink = (bg - lo) > (hi - bg) if (bg - lo) != (hi - bg) else bg > 0.5
    if dark_ink:
        np.subtract(1.0, a, out=a)

    border = _border(a)
    med = _median(border)
    spread = 1.4826 * _median(np.abs(border - med))
    cut = max(med, min(_percentile(border, 99), med + 5.0 * spread))
    a -= cut
    np.maximum(a, 0.0, out=a)  # np.clip(a - cut, 0, None), in place
    peak = a.max()
    if float(peak) < _MIN_INK_CONTRAST:
        return out

    bbox = _ink_bbox(a, peak)
    if bbox is None:
        return out
    y0, y1, x0, x1 = bbox
    crop = a[y0:y1, x0:x1]
    h, w = crop.shape
    scale = _DIGIT_BOX / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    patch_img = Image.fromarray(np.ascontiguousarray(crop, dtype=np.float32))
    if (nw, nh) != (w, h):
        patch_img = patch_img.resize((nw, nh), Image.Resampling.LANCZOS)
    patch = np.clip(np.asarray(patch_img, dtype=np.float32), 0.0, None)
    mass = float(patch.sum())
    if mass <= 0:
        return out

    ys, xs = np.indices(patch.shape)
    cy = float((patch * ys).sum()) / mass
    cx = float((patch * xs).sum()) / mass
    oy = min(max(math.floor(_DIGIT_CENTRE - cy + 0.5), 0), IMAGE_SIDE - nh)
    ox = min(max(math.floor(_DIGIT_CENTRE - cx + 0.5), 0), IMAGE_SIDE - nw)
    out[oy : oy + nh, ox : ox + nw] = patch
    return np.clip(out / out.max(), 0.0, 1.0).astype(np.float32)


def prepare_sign(image: Image.Image) -> np.ndarray:
    """Normalise a hand-sign photo the way Sign Language MNIST was made.

    Grayscale, centre square crop, resize to 28x28 (Lanczos, area-antialiased
    when shrinking). No polarity change. Returns (28, 28) float32 in 0..1.
    """
    gray = image if image.mode == "L" else to_grayscale(image)
    w, h = gray.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    square = gray.crop((left, top, left + side, top + side))
    f = Image.fromarray(np.asarray(square, dtype=np.float32))
    small = f.resize((IMAGE_SIDE, IMAGE_SIDE), Image.Resampling.LANCZOS, reducing_gap=3.0)
    return (np.clip(np.asarray(small, dtype=np.float32), 0, 255) / 255.0).astype(np.float32)


PREPROCESSORS: dict[str, Callable[[Image.Image], np.ndarray]] = {
    MNIST_DIGIT: prepare_digit,
    ASL_SIGN: prepare_sign,
}


def image_to_vector(
    data: bytes, preprocessing: str, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """Decode an upload and preprocess it for a model -> float32 (784,) in 0..1.

    ``preprocessing`` is the name stored in the model's metadata; an unknown
    name is a programming error (ValueError), checked before decoding.
    Raises ImageError / ImageTooLarge for bad uploads.
    """
    try:
        prepare = PREPROCESSORS[preprocessing]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown preprocessing {preprocessing!r}; known: {sorted(PREPROCESSORS)}"
        ) from None
    image = decode_image(data, max_pixels=max_pixels)
    return prepare(image).reshape(VECTOR_LENGTH).astype(np.float32, copy=False)
