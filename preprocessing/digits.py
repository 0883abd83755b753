"""A photo, scan or drawing of a digit -> the MNIST-style 28x28 input (light ink on black, centred)."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from preprocessing.decode import to_grayscale
from preprocessing.vector import IMAGE_SIDE

# prepare_digit parameters (see its docstring).
_DIGIT_BOX = 20  # MNIST fits the digit into 20x20 ...
_DIGIT_CENTRE = 14.0  # ... and puts its centre of mass at pixel (14, 14).
_WORK_MAX_SIDE = 1024  # larger uploads are box-reduced first (speed only)
_MIN_INK_CONTRAST = 0.08  # below this (fraction of 0..255) the image is blank
_INK_FRACTION = 0.1  # pixels above this fraction of the max are ink for the bbox


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
