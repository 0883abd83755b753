"""The web page's drawing pad, offline: pen strokes -> the PNG the page uploads, and pen paths for
digits and for things that are not digits, as people draw them on the pad.

Never shipped with the service: the benchmarks (``bench/uploads.py``, ``bench/ood.py``) and the
tests send these uploads through the upload path.

**The pad** (``service/web/app.js`` and ``index.html``): a square canvas whose side in pixels is
its width on screen times the device pixel ratio (280 before the page fits it; up to 300 CSS px on
a desktop, the screen's width on a phone), white, with a black pen ``PEN_WIDTH`` (8 %) of the side
wide, round caps and joins. A touch of the pen draws a filled disc of the pen's width; every
pointer move draws a line from the last point to the new one (each segment stroked on its own,
anti-aliased); lifting the pen sends ``canvas.toBlob("image/png")``: an RGBA PNG of the whole
canvas, named ``drawing.png``. :func:`render` and :func:`upload_bytes` do the same with strokes
given in *pad units*: (x, y) as shares of the side, (0, 0) the top-left corner, (1, 1) the
bottom-right one.

**Digits written on the pad** (:func:`digit_drawing`): pen paths for 0-9 in several styles each
(:data:`DIGIT_STYLES`: a 1 with or without flag and base, a 7 with or without bar, open and closed
4s, 9s with straight or curved tails ...), drawn with a random slant, size, position, aspect,
turn and hand wobble, on a pad of a random pixel size, with a pen of 6-10 % of the side (the
page's 8 % and its neighbours: the pen's width against the digit varies with the digit's size
anyway). They stand in for people's own writing on the pad: they are made by a program, from one
person's idea of how digits are written, not collected from users, so they say how the service
reads *such* drawings, not how often it reads real users' ones right.

**Non-digits on the pad** (:data:`NON_DIGIT_KINDS`): a scribble, a short and a long dash (any
angle within 15 degrees of horizontal), a dot (a tap: one point), a capital letter drawn with
strokes among letters that do not look like a digit (A E F H K M N R W X Y) and a circle left open
(an arc of 200-300 degrees at any rotation).

Everything random comes from the ``rng`` argument, so the same generator state gives the same
bytes.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from PIL import Image

PEN_WIDTH = 0.08  # app.js PEN_WIDTH: the pen's width as a share of the canvas side
PAD_SIDE = 280  # index.html: the canvas's size before the page fits it to the screen
#: canvas sides in pixels the page sends: 300 CSS px at device pixel ratios 1-3, phones' widths at 2-3
PAD_SIDES = (280, 300, 375, 450, 600, 720, 900)
PEN_RANGE = (0.06, 0.10)  # the generators' pens (share of the side) around the page's PEN_WIDTH

Stroke = Sequence[tuple[float, float]]


# ---------------------------------------------------------------------------------------------- render


def _segment_coverage(cov: np.ndarray, a: np.ndarray, b: np.ndarray, radius: float) -> None:
    """Composite one round-capped segment a-b (pixels) of ``radius`` onto the coverage ``cov``
    (source-over, as the canvas composites each ``stroke()``), anti-aliased: a pixel's coverage is
    its centre's distance to the segment's edge, clipped to 0..1."""
    h, w = cov.shape
    lo = np.floor(np.minimum(a, b) - radius - 1).astype(int)
    hi = np.ceil(np.maximum(a, b) + radius + 1).astype(int)
    x0, y0 = max(lo[0], 0), max(lo[1], 0)
    x1, y1 = min(hi[0], w), min(hi[1], h)
    if x0 >= x1 or y0 >= y1:
        return
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    px, py = xs + 0.5 - a[0], ys + 0.5 - a[1]
    d = b - a
    length2 = float(d @ d)
    t = np.clip((px * d[0] + py * d[1]) / length2, 0.0, 1.0) if length2 > 0 else 0.0
    distance = np.hypot(px - t * d[0], py - t * d[1])
    c = np.clip(radius + 0.5 - distance, 0.0, 1.0)
    region = cov[y0:y1, x0:x1]
    region += c * (1.0 - region)


def render(strokes: Sequence[Stroke], side: int = PAD_SIDE, pen: float = PEN_WIDTH) -> np.ndarray:
    """The pad's canvas after drawing ``strokes`` (pad units): uint8 grey (side, side), 255 = white.

    Each stroke: a disc of the pen's width at its first point (the touch), then one round-capped
    line per move to the next point, as app.js draws them.
    """
    if side < 1:
        raise ValueError(f"the pad's side must be at least 1 pixel, got {side}")
    cov = np.zeros((side, side), np.float64)
    radius = pen * side / 2
    for stroke in strokes:
        points = np.asarray(stroke, np.float64).reshape(-1, 2) * side
        if not len(points):
            continue
        _segment_coverage(cov, points[0], points[0], radius)  # the touch: a dot
        for a, b in zip(points[:-1], points[1:]):
            _segment_coverage(cov, a, b, radius)
    return np.rint(255.0 * (1.0 - cov)).astype(np.uint8)


def upload_bytes(strokes: Sequence[Stroke], side: int = PAD_SIDE, pen: float = PEN_WIDTH) -> bytes:
    """What the page sends for ``strokes``: the canvas as ``toBlob("image/png")`` makes it (RGBA,
    opaque, black ink on white)."""
    buffer = io.BytesIO()
    Image.fromarray(render(strokes, side, pen)).convert("RGBA").save(buffer, "PNG")
    return buffer.getvalue()


@dataclass(frozen=True)
class Drawing:
    """Strokes in pad units on a pad of ``side`` pixels with a pen of ``pen`` (share of the side);
    ``label``: the digit drawn, or the kind of non-digit; ``style``: how it was drawn."""

    strokes: tuple[np.ndarray, ...]
    side: int
    pen: float
    label: int | str
    style: str

    def upload(self) -> bytes:
        return upload_bytes(self.strokes, self.side, self.pen)

    def image(self) -> np.ndarray:
        return render(self.strokes, self.side, self.pen)


# ---------------------------------------------------------------------------------------------- paths


def _arc(cx: float, cy: float, rx: float, ry: float, start: float, stop: float, step: float = 6.0) -> np.ndarray:
    """Points of an elliptic arc (degrees, counter-clockwise as seen, 90 = top) from start to stop."""
    n = max(2, int(abs(stop - start) / step) + 1)
    a = np.deg2rad(np.linspace(start, stop, n))
    return np.stack([cx + rx * np.cos(a), cy - ry * np.sin(a)], axis=1)


def _line(*points: tuple[float, float]) -> np.ndarray:
    return np.asarray(points, np.float64)


def _join(*parts: np.ndarray) -> np.ndarray:
    return np.concatenate(parts, axis=0)


def _smooth(points: Sequence[tuple[float, float]], per_segment: int = 8) -> np.ndarray:
    """A Catmull-Rom curve through ``points``."""
    p = np.asarray(points, np.float64)
    p = np.concatenate([p[:1], p, p[-1:]])
    out = []
    t = np.linspace(0, 1, per_segment, endpoint=False)[:, None]
    for i in range(1, len(p) - 2):
        p0, p1, p2, p3 = p[i - 1], p[i], p[i + 1], p[i + 2]
        out.append(0.5 * (2 * p1 + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t ** 2
                          + (-p0 + 3 * p1 - 3 * p2 + p3) * t ** 3))
    out.append(p[-2:-1])
    return np.concatenate(out)


# A glyph: strokes in a unit box (x 0..1 across, y 0..1 down), drawn in the order and direction a
# hand draws them; its natural width / height.
Glyph = tuple[list[np.ndarray], float]

_NINE_LOOP = _arc(0.5, 0.27, 0.5, 0.27, 0, 370)

#: digit -> style -> glyph
DIGIT_STYLES: dict[int, dict[str, Glyph]] = {
    0: {
        "oval": ([_arc(0.5, 0.5, 0.5, 0.5, 95, 95 + 365)], 0.7),
        "overlap": ([_arc(0.5, 0.5, 0.5, 0.5, 70, 70 + 390)], 0.65),
        "round": ([_arc(0.5, 0.5, 0.5, 0.5, 100, 100 + 360)], 0.9),
    },
    1: {
        "stick": ([_line((0.5, 0.0), (0.5, 1.0))], 0.4),
        "flag": ([_line((0.15, 0.28), (0.55, 0.0), (0.55, 1.0))], 0.45),
        "flag and base": ([_line((0.15, 0.28), (0.55, 0.0), (0.55, 1.0)), _line((0.1, 1.0), (0.95, 1.0))], 0.55),
    },
    2: {
        "plain": ([_join(_arc(0.5, 0.28, 0.47, 0.28, 160, -40), _line((0.02, 1.0), (1.0, 1.0)))], 0.7),
        "loop": ([_join(_arc(0.5, 0.28, 0.47, 0.28, 160, -40), _line((0.12, 0.9)),
                        _arc(0.2, 0.85, 0.12, 0.1, 200, -150), _line((1.0, 0.97)))], 0.7),
        "curved": ([_join(_arc(0.5, 0.3, 0.47, 0.3, 150, -20),
                          _smooth([(0.93, 0.42), (0.6, 0.72), (0.05, 1.0)])[1:], _line((0.98, 0.98)))], 0.7),
    },
    3: {
        "round": ([_join(_arc(0.45, 0.26, 0.47, 0.26, 150, -90), _arc(0.45, 0.76, 0.52, 0.24, 90, -150))], 0.65),
        "flat top": ([_join(_line((0.05, 0.0), (0.9, 0.0), (0.4, 0.42)), _arc(0.45, 0.71, 0.5, 0.29, 95, -150))], 0.65),
        "pointed": ([_join(_arc(0.45, 0.25, 0.45, 0.25, 150, -60), _line((0.35, 0.5)),
                           _arc(0.45, 0.75, 0.5, 0.25, 70, -150))], 0.6),
    },
    4: {
        "open": ([_line((0.12, 0.0), (0.05, 0.6), (1.0, 0.6)), _line((0.75, 0.05), (0.75, 1.0))], 0.75),
        "closed": ([_line((0.7, 0.0), (0.0, 0.65), (1.0, 0.65)), _line((0.7, 0.0), (0.7, 1.0))], 0.75),
        "one stroke": ([_line((0.7, 1.0), (0.7, 0.0), (0.0, 0.65), (1.0, 0.65))], 0.75),
    },
    5: {
        "bar last": ([_join(_line((0.15, 0.02), (0.1, 0.46)), _arc(0.45, 0.7, 0.5, 0.3, 140, -150)),
                      _line((0.15, 0.0), (0.95, 0.0))], 0.65),
        "one stroke": ([_join(_line((0.95, 0.0), (0.15, 0.0), (0.1, 0.46)), _arc(0.45, 0.7, 0.5, 0.3, 140, -150))], 0.65),
    },
    6: {
        "loop": ([_join(_arc(0.95, 0.7, 0.9, 0.7, 95, 180), _arc(0.5, 0.72, 0.45, 0.28, 180, 520))], 0.65),
        "straight stem": ([_join(_line((0.75, 0.0), (0.08, 0.62)), _arc(0.5, 0.72, 0.44, 0.28, 170, 520))], 0.65),
    },
    7: {
        "plain": ([_line((0.0, 0.0), (1.0, 0.0), (0.35, 1.0))], 0.65),
        "bar": ([_line((0.0, 0.0), (1.0, 0.0), (0.35, 1.0)), _line((0.3, 0.52), (0.9, 0.52))], 0.65),
        "serif": ([_line((0.0, 0.18), (0.0, 0.0), (1.0, 0.0), (0.4, 1.0))], 0.65),
        "curved": ([_join(_line((0.0, 0.0), (1.0, 0.0)), _smooth([(1.0, 0.0), (0.65, 0.4), (0.45, 1.0)])[1:])], 0.65),
    },
    8: {
        "one stroke": ([_join(_arc(0.5, 0.25, 0.4, 0.25, 30, 270), _arc(0.5, 0.75, 0.5, 0.25, 90, -270),
                              _arc(0.5, 0.25, 0.4, 0.25, 270, 390))], 0.6),
        "two loops": ([_arc(0.5, 0.25, 0.4, 0.25, 90, 450), _arc(0.5, 0.75, 0.5, 0.25, 90, 450)], 0.6),
    },
    9: {
        "straight tail": ([_join(_NINE_LOOP, _line((0.98, 1.0)))], 0.6),
        "curved tail": ([_join(_NINE_LOOP, _smooth([(1.0, 0.3), (0.95, 0.75), (0.7, 0.98), (0.3, 0.95)])[1:])], 0.6),
        "loop then stem": ([_arc(0.5, 0.27, 0.5, 0.27, 10, 370), _line((1.0, 0.1), (0.95, 1.0))], 0.6),
    },
}

#: capital letters drawn with strokes that do not look like a digit
LETTER_STROKES: dict[str, Glyph] = {
    "A": ([_line((0.0, 1.0), (0.5, 0.0), (1.0, 1.0)), _line((0.22, 0.6), (0.78, 0.6))], 0.8),
    "E": ([_line((1.0, 0.0), (0.0, 0.0), (0.0, 1.0), (1.0, 1.0)), _line((0.0, 0.5), (0.8, 0.5))], 0.65),
    "F": ([_line((1.0, 0.0), (0.0, 0.0), (0.0, 1.0)), _line((0.0, 0.48), (0.75, 0.48))], 0.6),
    "H": ([_line((0.0, 0.0), (0.0, 1.0)), _line((1.0, 0.0), (1.0, 1.0)), _line((0.0, 0.5), (1.0, 0.5))], 0.75),
    "K": ([_line((0.0, 0.0), (0.0, 1.0)), _line((1.0, 0.0), (0.0, 0.55)), _line((0.3, 0.38), (1.0, 1.0))], 0.7),
    "M": ([_line((0.0, 1.0), (0.0, 0.0), (0.5, 0.6), (1.0, 0.0), (1.0, 1.0))], 0.85),
    "N": ([_line((0.0, 1.0), (0.0, 0.0), (1.0, 1.0), (1.0, 0.0))], 0.75),
    "R": ([_line((0.0, 1.0), (0.0, 0.0)),
           _join(_line((0.0, 0.0), (0.6, 0.0)), _arc(0.6, 0.25, 0.4, 0.25, 90, -90), _line((0.0, 0.5))),
           _line((0.4, 0.5), (1.0, 1.0))], 0.7),
    "W": ([_line((0.0, 0.0), (0.25, 1.0), (0.5, 0.3), (0.75, 1.0), (1.0, 0.0))], 1.0),
    "X": ([_line((0.0, 0.0), (1.0, 1.0)), _line((1.0, 0.0), (0.0, 1.0))], 0.8),
    "Y": ([_line((0.0, 0.0), (0.5, 0.5)), _line((1.0, 0.0), (0.5, 0.5), (0.5, 1.0))], 0.8),
}


def _resample(points: np.ndarray, step: float) -> np.ndarray:
    """Points every ``step`` along a path (its corners kept close: a small step)."""
    if len(points) < 2:
        return points
    lengths = np.hypot(*np.diff(points, axis=0).T)
    s = np.concatenate([[0.0], np.cumsum(lengths)])
    if s[-1] <= 0:
        return points[:1]
    n = max(2, int(np.ceil(s[-1] / step)) + 1)
    t = np.linspace(0, s[-1], n)
    return np.stack([np.interp(t, s, points[:, 0]), np.interp(t, s, points[:, 1])], axis=1)


def _wobble(points: np.ndarray, amplitude: float, rng: np.random.Generator) -> np.ndarray:
    """A hand's unsteadiness: a smooth random offset along the path (a few slow waves)."""
    if len(points) < 2 or amplitude <= 0:
        return points
    s = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(points, axis=0).T))])
    offset = np.zeros_like(points)
    for _ in range(3):
        wavelength = rng.uniform(0.3, 1.2)
        phase = rng.uniform(0, 2 * np.pi, size=2)
        offset += np.stack([np.sin(2 * np.pi * s / wavelength + phase[0]),
                            np.sin(2 * np.pi * s / wavelength + phase[1])], axis=1) * rng.uniform(0.3, 1.0)
    return points + offset * amplitude / 3


def _place(strokes: list[np.ndarray], aspect: float, rng: np.random.Generator, *, pen: float,
           height: tuple[float, float] = (0.3, 0.85), slant: float = 0.35, turn: float = 8.0,
           wobble: float = 0.05) -> tuple[np.ndarray, ...]:
    """Glyph strokes (unit box) drawn on the pad: wobble, size, aspect, slant, turn, position."""
    h = rng.uniform(*height)
    w = h * aspect * rng.uniform(0.75, 1.25)
    shear = rng.uniform(-slant, slant)  # > 0: leaning right
    angle = np.deg2rad(rng.uniform(-turn, turn))
    amplitude = rng.uniform(0.0, wobble)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    # proportions: the middle higher or lower (a 9's loop, an 8's halves), a gentle bend of the box
    gamma = np.exp(rng.uniform(-0.25, 0.25))
    bend = rng.uniform(-wobble, wobble, size=2) * 1.5
    phase = rng.uniform(0, 2 * np.pi, size=2)
    drawn = []
    for stroke in strokes:
        p = _resample(np.asarray(stroke, np.float64), 0.02)
        y01 = np.clip(p[:, 1], 0.0, 1.0)
        p = np.stack([p[:, 0] + bend[0] * np.sin(np.pi * y01 + phase[0]),
                      p[:, 1] - y01 + y01 ** gamma + bend[1] * np.sin(np.pi * p[:, 0] + phase[1])], axis=1)
        p = _wobble(p, amplitude, rng)
        x, y = (p[:, 0] - 0.5) * w, (p[:, 1] - 0.5) * h
        x = x - shear * y
        drawn.append(np.stack([x, y], axis=1) @ rot.T)
    every = np.concatenate(drawn)
    lo, hi = every.min(axis=0), every.max(axis=0)
    margin = pen / 2 + 0.01
    room = 1.0 - 2 * margin
    size = hi - lo
    if size.max() > room:  # too large for the pad: smaller
        scale = room / size.max()
        drawn = [d * scale for d in drawn]
        lo, hi = lo * scale, hi * scale
        size = hi - lo
    # anywhere on the pad, a little more often near the middle
    spare = room - size
    offset = margin + spare * rng.beta(2.0, 2.0, size=2) - lo
    return tuple(_resample(d + offset, 0.012) for d in drawn)


def _side_and_pen(rng: np.random.Generator) -> tuple[int, float]:
    return int(rng.choice(PAD_SIDES)), float(rng.uniform(*PEN_RANGE))


def digit_drawing(rng: np.random.Generator, digit: int | None = None, style: str | None = None) -> Drawing:
    """One digit written on the pad (random digit and style unless given)."""
    digit = int(rng.integers(10)) if digit is None else int(digit)
    styles = DIGIT_STYLES[digit]
    style = style or list(styles)[int(rng.integers(len(styles)))]
    strokes, aspect = styles[style]
    side, pen = _side_and_pen(rng)
    return Drawing(_place(strokes, aspect, rng, pen=pen), side, pen, digit, style)


def digit_uploads(n: int, rng: np.random.Generator) -> tuple[list[bytes], np.ndarray]:
    """``n`` pad-written digits (0-9 in turn, random styles) as the page sends them, and their labels."""
    drawings = [digit_drawing(rng, i % 10) for i in range(n)]
    return [d.upload() for d in drawings], np.array([d.label for d in drawings], np.int64)


# ---------------------------------------------------------------------------------------------- non-digits


def scribble(rng: np.random.Generator) -> Drawing:
    """A scribble: one or two strokes full of turns (a random walk with momentum), or a zigzag
    scratched back and forth, over a good part of the pad."""
    side, pen = _side_and_pen(rng)
    lo = rng.uniform(0.08, 0.3, size=2)
    hi = lo + rng.uniform(0.35, 0.84 - lo)
    strokes = []
    if rng.random() < 0.3:  # a zigzag, tilted
        n = int(rng.integers(5, 12))
        t = np.linspace(0, 1, n + 1)
        across = np.where(np.arange(n + 1) % 2 == 0, 0.0, 1.0) + rng.normal(0, 0.08, n + 1)
        points = np.stack([t, np.clip(across, 0, 1)], axis=1)
        if rng.random() < 0.5:
            points = points[:, ::-1]
        strokes.append(_smooth(lo + points * (hi - lo), 4))
        style = "zigzag"
    else:
        for _ in range(int(rng.integers(1, 3))):
            x, y = rng.uniform(lo, hi)
            heading, step = rng.uniform(0, 2 * np.pi), rng.uniform(0.04, 0.08)
            points = [(x, y)]
            for _ in range(int(rng.integers(15, 45))):
                heading += rng.normal(0, 0.6)
                x, y = x + np.cos(heading) * step, y + np.sin(heading) * step
                if not lo[0] <= x <= hi[0]:  # bounce off the scribble's box
                    heading = np.pi - heading
                    x = float(np.clip(x, lo[0], hi[0]))
                if not lo[1] <= y <= hi[1]:
                    heading = -heading
                    y = float(np.clip(y, lo[1], hi[1]))
                points.append((x, y))
            strokes.append(_smooth(points, 4))
        style = "random walk"
    return Drawing(tuple(strokes), side, pen, "scribble", style)


def _dash(rng: np.random.Generator, length: tuple[float, float], name: str) -> Drawing:
    side, pen = _side_and_pen(rng)
    n = float(rng.uniform(*length))
    angle = np.deg2rad(rng.uniform(-15, 15))
    bow = rng.uniform(-0.04, 0.04) * n  # a hand's line sags a little
    t = np.linspace(-0.5, 0.5, 24)
    p = np.stack([t * n, bow * (1 - 4 * t ** 2)], axis=1)
    p = _wobble(p, rng.uniform(0, 0.006), rng)
    p = p @ np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]).T
    if rng.random() < 0.5:
        p = p[::-1]  # drawn right to left
    lo, hi = p.min(axis=0), p.max(axis=0)
    margin = pen / 2 + 0.02
    centre = rng.uniform(margin - lo, 1 - margin - hi)
    return Drawing((p + centre,), side, pen, name, name)


def short_dash(rng: np.random.Generator) -> Drawing:
    """A dash 12-30 % of the pad long, within 15 degrees of horizontal."""
    return _dash(rng, (0.12, 0.30), "short dash")


def long_dash(rng: np.random.Generator) -> Drawing:
    """A line 35-85 % of the pad long, within 15 degrees of horizontal."""
    return _dash(rng, (0.35, 0.85), "long dash")


def dot(rng: np.random.Generator) -> Drawing:
    """A tap: one point, the pen's disc."""
    side, pen = _side_and_pen(rng)
    return Drawing((np.array([rng.uniform(0.15, 0.85, size=2)]),), side, pen, "dot", "tap")


def letter(rng: np.random.Generator, which: str | None = None) -> Drawing:
    """A capital letter (not a digit look-alike) drawn with strokes."""
    which = which or "AEFHKMNRWXY"[int(rng.integers(11))]
    strokes, aspect = LETTER_STROKES[which]
    side, pen = _side_and_pen(rng)
    return Drawing(_place(strokes, aspect, rng, pen=pen), side, pen, "letter", which)


def open_circle(rng: np.random.Generator) -> Drawing:
    """A circle left open: an arc of 200-300 degrees starting anywhere, slightly oval."""
    side, pen = _side_and_pen(rng)
    span = rng.uniform(200, 300)
    start = rng.uniform(0, 360)
    if rng.random() < 0.5:
        span = -span  # clockwise
    arc = _arc(0.5, 0.5, 0.5 * rng.uniform(0.8, 1.2), 0.5, start, start + span)
    strokes = _place([arc], 1.0, rng, pen=pen, height=(0.3, 0.8), slant=0.1, turn=20.0, wobble=0.02)
    return Drawing(strokes, side, pen, "open circle", f"{abs(span):.0f} degrees")


#: kind -> one drawing of it (the rows of ``bench/ood.py``)
NON_DIGIT_KINDS: dict[str, Callable[[np.random.Generator], Drawing]] = {
    "scribble": scribble,
    "short dash": short_dash,
    "long dash": long_dash,
    "dot": dot,
    "letter": letter,
    "open circle": open_circle,
}


def non_digit_uploads(kind: str, n: int, rng: np.random.Generator) -> list[bytes]:
    """``n`` pad drawings of one of :data:`NON_DIGIT_KINDS` as the page sends them."""
    try:
        make = NON_DIGIT_KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown kind {kind!r}; known: {', '.join(NON_DIGIT_KINDS)}") from None
    return [make(rng).upload() for _ in range(n)]
