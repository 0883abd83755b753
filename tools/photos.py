"""Hard photos: 28x28 test-split images as a phone photographs them, and blank pages made the same way.

Digits: dark ink (black or blue pen) on white, grey or tinted paper, plain, ruled (sometimes with a
margin line) or squared; the page or only the digit turned by up to 10 degrees; uneven light
(``training.lighting``: gradient, vignette, soft shadow), sometimes the desk beyond the page's
edge, dust specks, slight blur, sensor noise, JPEG; 600-3000 px frames. Blank pages: the same
without the digit. Signs: the hand photo under uneven light, as a JPEG of 200-800 px; blank frames:
a wall or backdrop with the same light and noise, no hand.

Never shipped with the service. Everything random comes from the ``rng`` argument, so the same
generator state gives the same bytes.
"""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image

from tools.uploads import check_pixels
from training import lighting

_RENDER_MAX_SIDE = 900  # the page is drawn at most this large, then scaled to the frame size


def _jpeg(rgb: np.ndarray, rng: np.random.Generator, quality: tuple[int, int] = (60, 92)) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8)).save(
        buf, "JPEG", quality=int(rng.integers(quality[0], quality[1] + 1))
    )
    return buf.getvalue()


def _frame_size(rng: np.random.Generator) -> tuple[int, int]:
    """(height, width) of a phone photo: long side 600-3000 px (log-uniform), 1:1 to 16:9, either way up."""
    long_side = int(np.exp(rng.uniform(np.log(600), np.log(3000))))
    ratio = float(rng.choice([1.0, 4 / 3, 4 / 3, 3 / 2, 16 / 9]))
    short_side = int(round(long_side / ratio))
    return (long_side, short_side) if rng.random() < 0.5 else (short_side, long_side)


def _page_coordinates(h: int, w: int, angle_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (u along the page's lines, v across them) of a page turned by ``angle_deg``."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = np.deg2rad(angle_deg)
    u = np.cos(t) * xx + np.sin(t) * yy
    v = -np.sin(t) * xx + np.cos(t) * yy
    return u, v


def _line_profile(coord: np.ndarray, spacing: float, offset: float, thickness: float) -> np.ndarray:
    """Anti-aliased lines of ``thickness`` px every ``spacing`` px along ``coord``: coverage 0..1."""
    distance = np.abs((coord - offset + spacing / 2) % spacing - spacing / 2)
    return np.clip(thickness / 2 + 0.5 - distance, 0.0, 1.0)


def _paper_lines(h: int, w: int, angle: float, scale: float, rng: np.random.Generator):
    """(coverage (h, w), transmission rgb) of ruled or squared paper lines, or None for plain paper."""
    kind = rng.choice(["plain", "ruled", "squared"], p=[0.3, 0.35, 0.35])
    if kind == "plain":
        return []
    u, v = _page_coordinates(h, w, angle)
    short = min(h, w)
    thickness = max(0.8, rng.uniform(1.0, 3.0) * scale)
    colour = rng.choice(["blue", "grey", "green"], p=[0.6, 0.3, 0.1])
    darkness = rng.uniform(0.1, 0.4)  # "faint": at most 40 % less light where a line is
    tint = {"blue": (1.0, 0.75, 0.25), "grey": (1.0, 1.0, 1.0), "green": (0.6, 0.3, 0.6)}[str(colour)]
    transmission = 1.0 - darkness * np.asarray(tint, np.float32)
    layers = []
    if kind == "ruled":
        spacing = short * rng.uniform(0.05, 0.11)
        layers.append((_line_profile(v, spacing, rng.uniform(0, spacing), thickness), transmission))
        if rng.random() < 0.5:  # the margin line, red
            x0 = rng.uniform(0.05, 0.3) * w
            margin = np.clip(thickness / 2 + 0.5 - np.abs(u - x0), 0.0, 1.0)
            layers.append((margin, 1.0 - rng.uniform(0.2, 0.45) * np.array([0.1, 0.8, 0.8], np.float32)))
    else:
        spacing = short * rng.uniform(0.03, 0.07)
        grid = np.maximum(
            _line_profile(u, spacing, rng.uniform(0, spacing), thickness),
            _line_profile(v, spacing, rng.uniform(0, spacing), thickness),
        )
        layers.append((grid, transmission))
    return layers


def _ink_tile(pixels28: np.ndarray, side: int, angle: float) -> np.ndarray:
    """The 28x28 digit as pen ink: upscaled, edges sharpened like a pen stroke, turned: opacity 0..1."""
    a = cv2.resize(pixels28.astype(np.float32) / 255.0, (side, side), interpolation=cv2.INTER_CUBIC)
    a = np.clip((a - 0.25) / 0.5, 0.0, 1.0)  # MNIST's anti-aliased edge -> a crisp stroke edge
    centre = (side / 2, side / 2)
    matrix = cv2.getRotationMatrix2D(centre, angle, 1.0)
    return cv2.warpAffine(a, matrix, (side, side), flags=cv2.INTER_LINEAR, borderValue=0.0)


def _page(pixels28: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    """A photographed page (with the digit of ``pixels28`` unless None) -> RGB float32 of the frame size."""
    fh, fw = _frame_size(rng)
    scale = min(1.0, _RENDER_MAX_SIDE / max(fh, fw))
    h, w = max(1, round(fh * scale)), max(1, round(fw * scale))
    px = scale * max(fh, fw) / 1000  # "1 px of a 1000 px photo" in render pixels

    page_angle = rng.uniform(-10, 10) if rng.random() < 0.5 else 0.0
    tint = rng.uniform(0.93, 1.0, size=3).astype(np.float32)
    paper = rng.uniform(170, 250) * tint / tint.max()
    transmission = np.ones((h, w, 3), np.float32)
    for coverage, colour in _paper_lines(h, w, page_angle, max(px, 0.5), rng):
        transmission *= 1.0 - coverage[..., None] * (1.0 - colour)

    if pixels28 is not None:
        short = min(h, w)
        box = short * rng.uniform(0.15, 0.55)  # MNIST's 20x20 digit box on the page
        side = max(28, int(round(box * 28 / 20)))
        digit_angle = page_angle + (rng.uniform(-10, 10) if page_angle == 0.0 else rng.uniform(-3, 3))
        ink = _ink_tile(pixels28, side, digit_angle)
        if rng.random() < 0.3:  # a fainter, worn pen or pencil
            ink *= rng.uniform(0.55, 0.85)
        top = int(rng.integers(0, max(1, h - side) + 1))
        left = int(rng.integers(0, max(1, w - side) + 1))
        opacity = np.zeros((h, w), np.float32)
        src = ink[: h - top, : w - left]
        opacity[top : top + src.shape[0], left : left + src.shape[1]] = src
        pen = rng.choice(["black", "blue"])
        pen_rgb = (np.array([0.08, 0.08, 0.1]) if pen == "black" else np.array([0.1, 0.15, 0.45]))
        pen_rgb = (pen_rgb * rng.uniform(0.6, 1.6)).astype(np.float32)
        transmission *= 1.0 - opacity[..., None] * (1.0 - pen_rgb)

    if rng.random() < 0.3:  # dust and specks on the paper
        for _ in range(int(rng.integers(1, 6))):
            y, x = int(rng.integers(0, h)), int(rng.integers(0, w))
            r = max(1, int(round(rng.uniform(0.5, 2.0) * max(px, 0.5))))
            cv2.circle(transmission, (x, y), r, tuple(float(c) for c in [rng.uniform(0.3, 0.8)] * 3), -1)

    rgb = paper * transmission
    if rng.random() < 0.25:  # the desk beyond an edge of the page
        u, v = _page_coordinates(h, w, page_angle + rng.uniform(-3, 3))
        coord, extent = (u, w) if rng.random() < 0.5 else (v, h)
        cut = extent * rng.uniform(0.0, 0.12)
        beyond = (coord < cut) if rng.random() < 0.5 else (coord > extent - cut)
        desk = rng.uniform(40, 150) * np.array([1.0, 0.85, 0.7], np.float32) * rng.uniform(0.8, 1.1, size=3)
        texture = cv2.resize(rng.normal(1.0, 0.08, (8, 8)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
        rgb = np.where(beyond[..., None], desk * texture[..., None], rgb)

    field = lighting.random_field(h, w, rng)
    light = rng.uniform(0.85, 1.1) * rng.uniform(0.92, 1.05, size=3).astype(np.float32)  # exposure, colour of the light
    rgb = rgb * field[..., None] * light

    if (h, w) != (fh, fw):
        rgb = cv2.resize(rgb, (fw, fh), interpolation=cv2.INTER_LINEAR)
    sigma = rng.uniform(0.3, 1.5) * max(fh, fw) / 1000  # slight blur: focus, hand shake
    rgb = cv2.GaussianBlur(rgb, (0, 0), sigma)
    noise = rng.normal(0.0, rng.uniform(1.0, 4.0), size=(fh, fw, 1)).astype(np.float32)
    return rgb + noise


def digit_photo(pixels28: np.ndarray, rng: np.random.Generator) -> bytes:
    """A 28x28 uint8 MNIST image (light ink on black) as a hard phone photo of the digit on paper: JPEG bytes."""
    return _jpeg(_page(check_pixels(pixels28), rng), rng)


def blank_page(rng: np.random.Generator) -> bytes:
    """A page photographed like ``digit_photo`` but with nothing written on it: JPEG bytes."""
    return _jpeg(_page(None, rng), rng)


def _sign_frame(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A greyscale 0..255 frame (h, w) -> an unevenly lit, tinted, noisy RGB photo (float32)."""
    h, w = a.shape
    field = lighting.random_field(h, w, rng)
    tint = rng.uniform(0.9, 1.1, size=3).astype(np.float32)
    tint /= tint @ np.array([0.299, 0.587, 0.114], np.float32)
    rgb = a[..., None] * field[..., None] * tint * rng.uniform(0.9, 1.1)
    return rgb + rng.normal(0.0, rng.uniform(1.0, 4.0), size=(h, w, 1)).astype(np.float32)


def sign_photo(pixels28: np.ndarray, rng: np.random.Generator) -> bytes:
    """A 28x28 Sign Language MNIST image as a webcam/phone photo under uneven light: JPEG bytes.

    The hand is upscaled to 200-800 px and the frame is widened by up to 25 % on both sides (copies of
    its edge), so the centre square is the hand as the data set framed it.
    """
    side = int(rng.integers(200, 801))
    a = cv2.resize(check_pixels(pixels28).astype(np.float32), (side, side), interpolation=cv2.INTER_CUBIC)
    margin = int(side * rng.uniform(0.0, 0.25))
    a = np.pad(a, ((0, 0), (margin, margin)) if rng.random() < 0.5 else ((margin, margin), (0, 0)), mode="edge")
    return _jpeg(_sign_frame(a, rng), rng, (70, 95))


def blank_frame(rng: np.random.Generator) -> bytes:
    """A frame without a hand (a wall or backdrop, with mild texture), lit and noised like ``sign_photo``."""
    side = int(rng.integers(200, 801))
    h, w = (side, int(side * rng.uniform(1.0, 1.5)))[:: 1 if rng.random() < 0.5 else -1]
    level = rng.uniform(40, 220)
    texture = rng.normal(0.0, rng.uniform(2, 12), (6, 6)).astype(np.float32)
    a = level + cv2.resize(texture, (w, h), interpolation=cv2.INTER_CUBIC)
    return _jpeg(_sign_frame(np.clip(a, 0, 255), rng), rng, (70, 95))
