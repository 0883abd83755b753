"""Outlier exposure (Hendrycks et al. 2019): drawings that are not digits, for training only.

A digit model trained on digits alone answers a scribble or a letter with a confident digit. Shown
such drawings with a uniform target (every class equally likely), the same dense network learns
to be unsure of them, which the service's ``unsure`` threshold then reports; nothing changes at
serving time. The drawings are made here with OpenCV (pen strokes on a white page, the way a pad
or a pen on paper makes them) and passed through the digit stem (:func:`preprocessing.find_digit`),
so the model sees them exactly as it would see them uploaded; those the stem already answers
``found: false`` are dropped.

Kinds (:data:`KINDS`): scribbles, open curves (circles cut open: arcs of 200-310 degrees), letters in
OpenCV's stroke (Hershey) fonts without the digit look-alikes, zigzags, crosses and hashes,
polygons and stars, and scattered dots. The benchmark's own non-digits (``tools/ood.py``,
``tools/pad.py``) are drawn by other code; these never meet its test seeds.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from preprocessing import find_digit

#: Letters that pass for a handwritten digit (O/0, I/1, S/5, Z/2, B/8, G/6, q/9, T/7, a/9 ...): not outliers.
DIGIT_LOOKALIKES = frozenset("OoDdIiJjlLSsZzBbGgqQTtUuaY")
LETTERS = "".join(c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz" if c not in DIGIT_LOOKALIKES)
FONTS = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX, cv2.FONT_HERSHEY_TRIPLEX,
         cv2.FONT_HERSHEY_SCRIPT_SIMPLEX, cv2.FONT_HERSHEY_SCRIPT_COMPLEX, cv2.FONT_HERSHEY_PLAIN)
SIDE = 160  # the page, in pixels


def _pen(rng: np.random.Generator) -> int:
    return int(rng.integers(4, 17))


def _smooth_path(rng: np.random.Generator, points: int, turn: float) -> np.ndarray:
    """A pen path: ``points`` steps with random turns of up to ``turn`` radians, fitted to the page."""
    angle = rng.uniform(0, 2 * np.pi)
    xy = [np.zeros(2)]
    for _ in range(points):
        angle += rng.uniform(-turn, turn)
        xy.append(xy[-1] + rng.uniform(8, 30) * np.array([np.cos(angle), np.sin(angle)]))
    return _fit(np.array(xy), rng)


def _fit(xy: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Scale and move a path into a random box of the page (its own aspect ratio kept)."""
    xy = xy - xy.min(axis=0)
    extent = max(float(xy.max()), 1e-6)
    size = rng.uniform(0.35, 0.8) * SIDE
    xy = xy * (size / extent)
    offset = rng.uniform(0.1 * SIDE, SIDE - 0.1 * SIDE - xy.max(axis=0).clip(max=0.8 * SIDE))
    return xy + offset


def _page() -> np.ndarray:
    return np.full((SIDE, SIDE), 255, np.uint8)


def _draw(page: np.ndarray, xy: np.ndarray, pen: int) -> None:
    cv2.polylines(page, [np.rint(xy).astype(np.int32)], False, 0, pen, cv2.LINE_AA)


def scribble(rng):
    page = _page()
    for _ in range(int(rng.integers(1, 3))):
        _draw(page, _smooth_path(rng, int(rng.integers(8, 17)), rng.uniform(1.5, 3.0)), _pen(rng))
    return page


def open_curve(rng):
    """A circle or ellipse cut open: an arc of 200-310 degrees at any rotation."""
    span = rng.uniform(200, 310)
    start = rng.uniform(0, 360)
    t = np.radians(np.linspace(start, start + span, 60))
    xy = np.stack([np.cos(t), rng.uniform(0.6, 1.4) * np.sin(t)], axis=1)
    page = _page()
    _draw(page, _fit(xy, rng), _pen(rng))
    return page


def letter(rng):
    page = _page()
    text = "".join(rng.choice(list(LETTERS), size=1 if rng.random() < 0.8 else 2))
    font = int(rng.choice(FONTS))
    thickness = int(rng.integers(2, 9))
    (w, h), _ = cv2.getTextSize(text, font, 1.0, thickness)
    scale = rng.uniform(0.4, 0.75) * SIDE / max(w, h)
    (w, h), _ = cv2.getTextSize(text, font, scale, thickness)
    x = int(rng.uniform(0, max(SIDE - w, 1)))
    y = int(rng.uniform(h, max(SIDE, h + 1)))
    cv2.putText(page, text, (x, y), font, scale, 0, thickness, cv2.LINE_AA)
    if rng.random() < 0.5:  # a hand's slant
        shear = rng.uniform(-0.3, 0.3)
        page = cv2.warpAffine(page, np.float32([[1, shear, -shear * SIDE / 2], [0, 1, 0]]), (SIDE, SIDE),
                              borderValue=255)
    return page


def zigzag(rng):
    n = int(rng.integers(4, 9))
    xy = np.stack([np.arange(n) * rng.uniform(0.5, 1.5), np.tile([0.0, 1.0], n)[:n]], axis=1)
    theta = rng.uniform(0, np.pi)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    page = _page()
    _draw(page, _fit(xy @ rot.T, rng), _pen(rng))
    return page


def crossing(rng):
    """An X, a plus, a hash or a grid of crossing lines."""
    page = _page()
    pen = _pen(rng)
    lines = int(rng.integers(2, 5))
    centre = rng.uniform(0.35, 0.65, size=2) * SIDE
    base = rng.uniform(0, np.pi)
    for i in range(lines):
        theta = base + (np.pi / 2 if i % 2 else 0) + rng.uniform(-0.2, 0.2)
        shift = (i // 2 - (lines // 2 - 1) / 2) * rng.uniform(0, 0.3) * SIDE
        d = np.array([np.cos(theta), np.sin(theta)])
        normal = np.array([-d[1], d[0]])
        half = rng.uniform(0.2, 0.4) * SIDE
        c = centre + shift * normal
        _draw(page, np.stack([c - half * d, c + half * d]), pen)
    return page


def polygon(rng):
    """A triangle, a square, a star: closed shapes no digit is."""
    k = int(rng.choice([3, 4, 5]))
    star = rng.random() < 0.4
    t = np.linspace(0, 2 * np.pi, k * (2 if star else 1) + 1) + rng.uniform(0, np.pi)
    r = np.where(np.arange(len(t)) % 2, 0.45, 1.0) if star else np.ones(len(t))
    xy = np.stack([r * np.cos(t), r * np.sin(t)], axis=1) * rng.uniform(0.8, 1.2, size=2)
    page = _page()
    _draw(page, _fit(xy, rng), _pen(rng))
    return page


def dots(rng):
    page = _page()
    pen = _pen(rng)
    for _ in range(int(rng.integers(3, 9))):
        x, y = rng.uniform(0.15, 0.85, size=2) * SIDE
        cv2.circle(page, (int(x), int(y)), pen // 2 + 1, 0, -1, cv2.LINE_AA)
    return page


KINDS = {"scribble": scribble, "open_curve": open_curve, "letter": letter, "zigzag": zigzag,
         "crossing": crossing, "polygon": polygon, "dots": dots}
#: How often each kind is drawn (scribbles, open curves and letters are what users draw most).
SHARES = {"scribble": 0.25, "open_curve": 0.2, "letter": 0.25, "zigzag": 0.08, "crossing": 0.08, "polygon": 0.08,
          "dots": 0.06}


def outlier_vectors(n: int, seed: int) -> np.ndarray:
    """``n`` non-digit drawings as the digit model's input, (n, 784) float32 in 0..1; only those the
    stem finds ink in (the rest are redrawn)."""
    rng = np.random.default_rng([seed, 0x0D1])
    names = list(SHARES)
    out = np.zeros((n, 784), np.float32)
    made = 0
    while made < n:
        kind = names[int(rng.choice(len(names), p=[SHARES[k] for k in names]))]
        extracted = find_digit(Image.fromarray(KINDS[kind](rng)))
        if extracted.reason is None and extracted.pixels.any():
            out[made] = extracted.pixels.reshape(-1)
            made += 1
    return out


def with_outliers(x: np.ndarray, y: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Training rows plus ``share`` x as many outliers with uniform targets, shuffled in."""
    n = int(round(share * len(x)))
    if n == 0:
        return x, y
    extra = outlier_vectors(n, seed).reshape((n, *x.shape[1:])).astype(x.dtype)
    uniform = np.full((n, y.shape[1]), 1.0 / y.shape[1], y.dtype)
    order = np.random.default_rng([seed, 0x0D2]).permutation(len(x) + n)
    return np.concatenate([x, extra])[order], np.concatenate([y, uniform])[order]
