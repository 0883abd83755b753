"""Out-of-distribution uploads: images that are neither a digit nor a hand sign, as users send them.

Never shipped with the service: ``bench/ood.py`` sends them through the real upload path to measure
how many come back ``unsure`` or ``found: false``; the tests take a few. Every kind draws on an
``rng``, so the same generator state gives the same bytes.

Kinds (:data:`KINDS`):

* ``blank_paper``: a photographed empty page (grey paper, uneven light, sensor noise, JPEG);
* ``letters``: printed Latin letters (PIL's own scalable font), dark on paper, tilted, at any size;
  letters that look like a digit (O, I, l, S, Z, B, G, b, g, q ...) are left out;
* ``scribbles``: a few random pen strokes full of turns, dark on paper;
* ``textures``: stripes, checkerboards, dots, brick walls, cloudy (low-pass) noise, in colour;
* ``noise``: full-frame Gaussian, uniform or salt-and-pepper noise, grey or colour;
* ``colour_bars``: the webcam / TV test pattern (SMPTE-style colour bars), with camera noise;
* and the other family's real images (:func:`other_family_uploads`): hand signs sent to the digit
  model, digits sent to the sign model.
"""

from __future__ import annotations

import io
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from tools.uploads import dress_as_upload

#: Letters that are a plausible handwritten digit (O/0, I/1, S/5, Z/2, B/8, G/6, b/6, g/9, q/9 ...),
#: left out of ``letters``: a model that reads them as digits is not wrong to.
DIGIT_LOOKALIKES = frozenset("OoDIiJjlSsZzBbGgqQ")
LETTERS = "".join(c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz" if c not in DIGIT_LOOKALIKES)


def _frame(rng: np.random.Generator, low: int = 200, high: int = 640) -> tuple[int, int]:
    """(width, height) of a photo."""
    w, h = (int(v) for v in rng.integers(low, high + 1, size=2))
    return w, h


def _paper(w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    """Grey-to-white paper under uneven light, float (h, w) 0..255."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    theta = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(theta) * (xx / w - 0.5) + np.sin(theta) * (yy / h - 0.5)
    level = rng.uniform(165, 245)
    paper = level + rng.uniform(0, 45) * ramp
    r2 = ((yy / h - 0.5) ** 2 + (xx / w - 0.5) ** 2) * 2
    paper *= 1.0 - rng.uniform(0, 0.25) * r2  # vignette
    return paper


def _smooth_noise(w: int, h: int, radius: float, rng: np.random.Generator) -> np.ndarray:
    """Low-pass (Gaussian-blurred) noise stretched to 0..1, float (h, w)."""
    raw = Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8))
    t = np.asarray(raw.filter(ImageFilter.GaussianBlur(radius)), np.float32)
    return (t - t.min()) / max(float(np.ptp(t)), 1e-6)


def _noisy(gray: np.ndarray, rng: np.random.Generator, sigma: tuple[float, float] = (1.0, 6.0)) -> np.ndarray:
    return gray + rng.normal(0, rng.uniform(*sigma), size=gray.shape)


def _to_image(gray_or_rgb: np.ndarray, rng: np.random.Generator | None = None) -> Image.Image:
    """Float pixels -> an 8-bit L image, or RGB with a slight colour cast half the time (for grey input)."""
    a = np.asarray(gray_or_rgb, np.float32)
    if a.ndim == 2 and rng is not None and rng.random() < 0.5:
        a = a[..., None] * rng.uniform(0.9, 1.0, size=3)
    a = np.rint(np.clip(a, 0, 255)).astype(np.uint8)
    return Image.fromarray(a, "RGB" if a.ndim == 3 else "L")


def _ink(mask: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A drawn 0..255 'L' mask as dark ink on photographed paper."""
    m = np.asarray(mask.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.5))), np.float32) / 255.0
    h, w = m.shape
    paper = _paper(w, h, rng)
    ink_level = rng.uniform(10, 80)
    return _to_image(_noisy(paper - (paper - ink_level) * m, rng), rng)


def blank_paper(rng: np.random.Generator) -> Image.Image:
    """An empty page photographed: paper, light fall-off, sensor noise, sometimes a faint texture."""
    w, h = _frame(rng)
    paper = _paper(w, h, rng)
    if rng.random() < 0.5:  # paper fibre / table texture: faint low-pass noise
        grain = _smooth_noise(w, h, rng.uniform(2, 8), rng) - 0.5
        paper += grain * rng.uniform(4, 16)
    return _to_image(_noisy(paper, rng), rng)


def _font(size: int) -> ImageFont.ImageFont:
    """PIL's own scalable font (no system font needed); the bitmap default where FreeType is absent."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):  # Pillow without FreeType: the 11 px bitmap font
        return ImageFont.load_default()


def letter(rng: np.random.Generator, text: str | None = None) -> Image.Image:
    """One printed letter (not a digit look-alike), bold or thin, tilted, anywhere on a page."""
    w, h = _frame(rng)
    text = text or LETTERS[int(rng.integers(len(LETTERS)))]
    size = int(min(w, h) * rng.uniform(0.3, 0.8))
    font = _font(size)
    mask = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(mask)
    stroke = int(size * rng.uniform(0.0, 0.06))
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font, stroke_width=stroke)
    if right - left < 4:  # the bitmap fallback font: draw small, then scale up
        small = Image.new("L", (right - left + 4, bottom - top + 4), 0)
        ImageDraw.Draw(small).text((2 - left, 2 - top), text, fill=255, font=font)
        glyph = small.resize((size * small.width // max(small.height, 1), size), Image.Resampling.BILINEAR)
    else:
        glyph = Image.new("L", (right - left + 2 * stroke + 4, bottom - top + 2 * stroke + 4), 0)
        ImageDraw.Draw(glyph).text((stroke + 2 - left, stroke + 2 - top), text, fill=255, font=font,
                                   stroke_width=stroke, stroke_fill=255)
    glyph = glyph.rotate(float(rng.uniform(-12, 12)), Image.Resampling.BICUBIC, expand=True)
    glyph.thumbnail((int(w * 0.95), int(h * 0.95)))
    x = int(rng.integers(0, max(1, w - glyph.width) + 1))
    y = int(rng.integers(0, max(1, h - glyph.height) + 1))
    mask.paste(glyph, (x, y))
    return _ink(mask, rng)


def scribble(rng: np.random.Generator) -> Image.Image:
    """One to four random pen strokes with many turns (a momentum random walk)."""
    w, h = _frame(rng)
    mask = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(mask)
    side = min(w, h)
    cx, cy, reach = w / 2 + rng.uniform(-0.15, 0.15) * w, h / 2 + rng.uniform(-0.15, 0.15) * h, side * 0.4
    width = max(2, int(side * rng.uniform(0.015, 0.06)))
    for _ in range(int(rng.integers(1, 5))):
        x, y = cx + rng.uniform(-reach, reach), cy + rng.uniform(-reach, reach)
        heading, points = rng.uniform(0, 2 * np.pi), []
        for _ in range(int(rng.integers(25, 80))):
            heading += rng.normal(0, 0.7)
            x = float(np.clip(x + np.cos(heading) * side * 0.04, cx - reach, cx + reach))
            y = float(np.clip(y + np.sin(heading) * side * 0.04, cy - reach, cy + reach))
            points.append((x, y))
        draw.line(points, fill=255, width=width, joint="curve")
    return _ink(mask, rng)


def _colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0, 255, size=3).astype(np.float32)


def texture(rng: np.random.Generator) -> Image.Image:
    """A random surface: stripes, checks, dots, bricks or clouds, in two random colours."""
    w, h = _frame(rng)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    kind = ("stripes", "checks", "dots", "bricks", "clouds")[int(rng.integers(5))]
    period = min(w, h) * rng.uniform(0.03, 0.25)
    theta = rng.uniform(0, np.pi)
    u = np.cos(theta) * xx + np.sin(theta) * yy
    v = -np.sin(theta) * xx + np.cos(theta) * yy
    if kind == "stripes":
        t = 0.5 + 0.5 * np.sin(2 * np.pi * u / period)
    elif kind == "checks":
        t = ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float32)
    elif kind == "dots":
        t = ((np.hypot((u % period) - period / 2, (v % period) - period / 2) < period * 0.3)).astype(np.float32)
    elif kind == "bricks":
        row = np.floor(yy / period)
        shifted = xx + (row % 2) * period
        t = ((yy % period < period * 0.12) | (shifted % (2 * period) < period * 0.12)).astype(np.float32)
    else:
        t = _smooth_noise(w, h, period / 3, rng)
    a, b = _colour(rng), _colour(rng)
    rgb = a + (b - a) * t[..., None]
    return _to_image(_noisy(rgb, rng))


def noise(rng: np.random.Generator) -> Image.Image:
    """Full-frame noise: Gaussian, uniform or salt-and-pepper; grey or colour."""
    w, h = _frame(rng)
    shape = (h, w, 3) if rng.random() < 0.5 else (h, w)
    kind = int(rng.integers(3))
    if kind == 0:
        a = rng.normal(rng.uniform(60, 200), rng.uniform(20, 80), size=shape)
    elif kind == 1:
        a = rng.uniform(0, 255, size=shape)
    else:
        a = np.full(shape, rng.uniform(60, 200))
        pick = rng.random(shape[:2])
        share = rng.uniform(0.02, 0.3)
        a[pick < share / 2] = 0
        a[pick > 1 - share / 2] = 255
    return _to_image(a)


# SMPTE-style colour bars: white (75 %), yellow, cyan, green, magenta, red, blue.
_BARS = np.array([[191, 191, 191], [191, 191, 0], [0, 191, 191], [0, 191, 0],
                  [191, 0, 191], [191, 0, 0], [0, 0, 191]], np.float32)


def colour_bars(rng: np.random.Generator) -> Image.Image:
    """The webcam / TV test pattern: seven colour bars, the short reversed strip and the dark
    bottom band (SMPTE-like), as a camera snapshot (any crop of it, noise, JPEG later)."""
    w, h = 640, 480
    x = np.arange(w) * 7 // w
    img = np.empty((h, w, 3), np.float32)
    top, middle = int(h * 0.67), int(h * 0.75)
    img[:top] = _BARS[x]
    img[top:middle] = _BARS[(6 - x) % 7] * (x % 2 == 0)[:, None]  # blue, black, magenta, black ...
    bottom = np.where(x < 2, 30.0, np.where(x < 4, 235.0, 16.0))
    img[middle:] = bottom[:, None]
    side = int(min(w, h) * rng.uniform(0.6, 1.0))  # the square crop a snapshot takes, or part of it
    left = int(rng.integers(0, w - side + 1))
    crop_top = int(rng.integers(0, h - side + 1))
    img = img[crop_top:crop_top + side, left:left + side] if rng.random() < 0.5 else img
    return _to_image(_noisy(img * rng.uniform(0.8, 1.1), rng))


#: kind -> one image of it.
GENERATORS: dict[str, Callable[[np.random.Generator], Image.Image]] = {
    "blank_paper": blank_paper,
    "letters": letter,
    "scribbles": scribble,
    "textures": texture,
    "noise": noise,
    "colour_bars": colour_bars,
}
KINDS = tuple(GENERATORS)


def encode(image: Image.Image, rng: np.random.Generator) -> bytes:
    """As a phone or browser sends it: JPEG (quality 70-95) or PNG, half and half."""
    buffer = io.BytesIO()
    if rng.random() < 0.5:
        image.save(buffer, "JPEG", quality=int(rng.integers(70, 96)))
    else:
        image.save(buffer, "PNG")
    return buffer.getvalue()


def ood_uploads(kind: str, n: int, rng: np.random.Generator) -> list[bytes]:
    """``n`` uploads of one of :data:`KINDS`."""
    try:
        make = GENERATORS[kind]
    except KeyError:
        raise ValueError(f"unknown kind {kind!r}; known: {', '.join(KINDS)}") from None
    return [encode(make(rng), rng) for _ in range(n)]


def other_family_uploads(pixels: np.ndarray, source_preprocessing: str, rng: np.random.Generator) -> list[bytes]:
    """Real 28x28 images of one family dressed as uploads of their own kind (digits as photographed
    paper, signs as photos: ``tools.uploads.dress_as_upload``), to send to the other family's model."""
    return [dress_as_upload(image, source_preprocessing, rng, fmt="random") for image in pixels]
