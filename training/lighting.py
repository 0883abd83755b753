"""Uneven light as webcams and phones produce it: random multiplicative illumination fields (numpy).

A field is an (h, w) float32 array of gains in (0, 1]: the image is multiplied by it. Three kinds,
alone or combined, with strengths chosen from what a phone or webcam gives under room light:

* a linear **gradient** across the frame, from full brightness down to ``0.5``-``0.85`` at the
  dark side (a window or lamp to one side: about one stop of fall-off across the frame);
* a **vignette**, the lens' radial fall-off, down to ``0.6``-``0.9`` in the corners (uncorrected
  webcams lose up to about two-thirds of a stop there);
* a soft-edged **shadow** of a hand, phone or head over part of the frame, ``0.45``-``0.8`` of the
  light inside, its edge blurred over 5-20 % of the frame.

Used for evaluation sets (``tools/photos.py``, the lit sets of ``make bench-photos`` and the
training summary); the training-time augmentation draws its own fields inside the model's
training-only layers.
"""

from __future__ import annotations

import numpy as np

KINDS = ("gradient", "vignette", "shadow")


def gradient(h: int, w: int, rng: np.random.Generator, low: tuple[float, float] = (0.5, 0.85)) -> np.ndarray:
    """Linear fall-off in a random direction, from 1 to ``low`` across the frame."""
    theta = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = np.cos(theta) * (xx / max(w - 1, 1) - 0.5) + np.sin(theta) * (yy / max(h - 1, 1) - 0.5)
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)  # 0 at the bright side, 1 at the dark
    return (1.0 - ramp * (1.0 - rng.uniform(*low))).astype(np.float32)


def vignette(h: int, w: int, rng: np.random.Generator, corner: tuple[float, float] = (0.6, 0.9)) -> np.ndarray:
    """Radial fall-off around a slightly off-centre point, ``corner`` at the farthest corner."""
    cy, cx = h * rng.uniform(0.4, 0.6), w * rng.uniform(0.4, 0.6)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((yy - cy) / h) ** 2 + ((xx - cx) / w) ** 2
    r2 /= max(float(r2.max()), 1e-6)
    return (1.0 - r2 * (1.0 - rng.uniform(*corner))).astype(np.float32)


def shadow(h: int, w: int, rng: np.random.Generator, depth: tuple[float, float] = (0.45, 0.8)) -> np.ndarray:
    """A soft-edged half-plane or blob of shadow over part of the frame."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    softness = rng.uniform(0.05, 0.2)
    if rng.random() < 0.5:  # the edge of a hand or phone: a half-plane through a random point
        theta = rng.uniform(0, 2 * np.pi)
        py, px = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8)
        distance = np.cos(theta) * (xx / w - px) + np.sin(theta) * (yy / h - py)
    else:  # a head or an object above: an ellipse
        cy, cx = rng.uniform(0, 1), rng.uniform(0, 1)
        ry, rx = rng.uniform(0.2, 0.6, size=2)
        distance = np.sqrt(((yy / h - cy) / ry) ** 2 + ((xx / w - cx) / rx) ** 2) - 1.0
    inside = 1.0 / (1.0 + np.exp(distance / softness * 4.0))  # 1 deep inside, 0 outside
    return (1.0 - inside * (1.0 - rng.uniform(*depth))).astype(np.float32)


def random_field(h: int, w: int, rng: np.random.Generator, kinds: tuple[str, ...] = KINDS) -> np.ndarray:
    """One to all of ``kinds``, multiplied together (always at least one)."""
    chosen = [k for k in kinds if rng.random() < 0.5] or [kinds[int(rng.integers(len(kinds)))]]
    field = np.ones((h, w), np.float32)
    for kind in chosen:
        field *= {"gradient": gradient, "vignette": vignette, "shadow": shadow}[kind](h, w, rng)
    return field


def half_light_field(h: int, w: int, rng: np.random.Generator, shadow_share: float = 0.4) -> np.ndarray:
    """Uneven light as the lit sign photos were first described: a gradient or a vignette (half
    each) down to 0.45-0.6 at the dark side (about half brightness), and on ``shadow_share`` of
    the photos a soft shadow as well. Its shadows are rarer than :func:`random_field`'s (about
    half of the photos), and its fall-offs darker."""
    falloff = gradient if rng.random() < 0.5 else vignette
    field = falloff(h, w, rng, (0.45, 0.6))
    return field * shadow(h, w, rng) if rng.random() < shadow_share else field
