"""A photo, scan or drawing of a digit -> the MNIST-style 28x28 input (light ink on black, centred).

The ink is found the way a document scanner finds it, with OpenCV: even out the light (divide by
the paper's brightness, estimated by a morphological closing), threshold, take away the ruled or
squared lines of the paper, keep the digit's connected components (a lone dot or dash is not a
digit), and bring the strokes to MNIST's width; then the MNIST recipe (fit into 20x20, centre of
mass at (14, 14)).
"""

from __future__ import annotations

import math
import cv2
import numpy as np
from PIL import Image

from preprocessing.decode import to_grayscale
from preprocessing.vector import IMAGE_SIDE, Extracted

_DIGIT_BOX = 20  # MNIST fits the digit into 20x20 ...
_DIGIT_CENTRE = 14.0  # ... and puts its centre of mass at pixel (14, 14).
_MIN_PHOTO_SIDE = 100  # smaller images are digital drawings or MNIST itself: no paper lines, even light
_CLEAN_PAPER = (4, 0.85)  # so is a larger image whose paper is one exact grey level: of the pixels within
# the first number of levels of its most common one, that one holds at least the second share (drawings,
# crops, screenshots: mostly over 0.9; a blur's soft rim spreads it, so a blurred digit may stay a photo;
# a few compressed photos of evenly lit pages reach it too, hence ...)
_CLEAN_SAMPLE_SIDE = 160  # (counted on one pixel of every few, this many on the long side)
_INK_SHADE = 0.7  # ... no shadow on it: a flat plateau lighter than this (darker: a binary digit's ink)
_WORK_MAX_SIDE = 320  # larger uploads are box-reduced to at most this (speed; a digit needs far fewer)
_BACKGROUND_SIDE = 96  # the paper's brightness is estimated on a copy about this small ...
_CLOSING_SHARE = 1 / 5  # ... with a closing (a square) this share of its short side: wider than any stroke
_EVEN_PAPER = 0.08  # ... unless a closing half the side wide varies less than this share: then one level
_PLATEAU = (0.15, 0.02, 1 / 20, 1 / 6)  # ... unless a sharp-edged shadow lies inside: darker than the first,
# flatter than the second (darkness per pixel of the small copy), its gaps up to the third share of the side
# bridged (a stroke across it), and as wide as the fourth
_PLATEAU_SHADE = (0.08, 0.5)  # ... and of one shade: the second share of its flat pixels within the first of
# darkness (a shadow; the blocks of an enlarged thumbnail are of many shades)
_LIGHT_INK_SHARE = 0.3  # in a photo, light ink covers less of the frame than this (else: a page)
_NOISE_FLOOR = 0.1  # darkness is measured against paper at least this share of the brightest in the photo
_MIN_CONTRAST = 0.2  # ink is at least this much darker than its paper (share of the paper's light) ...
_MIN_INK = 0.3  # ... and the darkest ink, the frame's and the digit's, at least this much (less: blank, a shadow's rim)
_PEAK_SHARE = 0.45  # the ink mask: darker than this share of the ink's own darkness ...
_RIM_SHARE = 0.3  # ... and fainter ink, down to this share, where it touches that (not on lined paper)
_PAPER_SHARE = 0.3  # the paper estimate leaves out pixels darker than this share of the darkest (a soft rim)
_EDGE_CAP = (0.5, 0.2)  # the page's edge: a closing this share as wide, where this share below the paper
_RIM_ALONG = 0.4  # a piece with this share of its ink along where the page ends (the cap's edge) is its rim
_LINE_LENGTH_SHARE = 0.6  # a paper line spans at least this share of the frame ...
_LINE_MAX_THICKNESS = 0.012  # ... and is at most this thick (share of the short side) ...
_LINE_MIN_CONTRAST = 0.04  # ... and at least this much darker than the paper
_EDGE_CONTACT = 0.1  # pieces touching the frame's edge over this share of its short side are not ink
_GROUP_GAP = 0.35  # pieces within this share of the digit's size belong to it
_MIN_PIECE_MASS = 0.03  # pieces with less ink than this share of the largest are specks
_MIN_DIGIT_SIZE = 0.04  # a digit is at least this share of the image's short side ...
_MIN_DIGIT_PIXELS = 6  # ... and this many work pixels high or wide
# A lone dot or dash is not a digit (a tap on the drawing pad, a minus sign): the ink, measured in
# its own pen's widths, is at most _DOT_EXTENT long every way and small in the frame (a dot), or
# at most _DASH_ACROSS thick across its length, as thick all along, and within _DASH_TILT degrees of
# horizontal (a dash; a 1 is a line too, but upright or slanted); and it is alone (other ink, faint included, at most
# _LONE_REST of its own) with a clear edge (a soft rim at most _SHARP_RIM of its area: a digit
# blurred into a blob has a wide one).
_DOT_EXTENT = 2.0
_DOT_FRAME = 0.25  # share of the image's short side
_DASH_ACROSS = 1.8
_DASH_TILT = 30.0
_DASH_EVEN = 1.5  # ... and as thick all along (slices across it: a dash 1.1, a small thick 6 with its stem 2.2)
_FAINT_INK = (0.08, 0.15)  # faint ink: darker than the first, and than the second share of the ink's darkness
_LONE_REST = 0.5
_SHARP_RIM = 0.35
# Stroke width in the 20x20 box (2 * area / contour length of the ink above half intensity): MNIST's
# 1st-99th percentile is 1.3-4.5 px, its 10th-90th 1.8-3.3; strokes outside the first range (MNIST
# has its own bold and thin digits, which the model knows) are brought to the second's edge.
_STROKE_RANGE = (1.3, 4.5)
_STROKE_TARGET = (1.8, 3.3)


def _work_array(image: Image.Image) -> tuple[np.ndarray, int | None]:
    """The image as uint8, box-reduced by an integer factor to about ``_WORK_MAX_SIDE`` at most, and
    its paper's grey level where that is one exact level (``_CLEAN_PAPER``: no sensor noise), else
    None. Images under ``_MIN_PHOTO_SIDE`` are digital anyway: None."""
    gray = image if image.mode == "L" else to_grayscale(image)
    factor = math.ceil(max(gray.size) / _WORK_MAX_SIDE)
    a = np.asarray(gray.reduce(factor) if factor >= 2 else gray, dtype=np.uint8)
    if min(a.shape) < _MIN_PHOTO_SIDE:
        return a, None
    # one pixel of every few (a box average would smooth a photo's sensor noise away)
    step = math.ceil(max(gray.size) / _CLEAN_SAMPLE_SIDE)
    w, h = gray.size
    sample = np.asarray(gray.resize((math.ceil(w / step), math.ceil(h / step)), Image.Resampling.NEAREST), np.uint8)
    counts = np.bincount(sample.ravel(), minlength=256)
    mode = int(counts.argmax())
    spread, share = _CLEAN_PAPER
    return a, mode if counts[mode] >= share * counts[max(0, mode - spread) : mode + spread + 1].sum() else None


def _digital(a: np.ndarray, paper_level: int | None) -> bool:
    """A digital image (a drawing, a screenshot, a digit cropped and enlarged) rather than a photo or
    scan: smaller than ``_MIN_PHOTO_SIDE``, or its paper one exact grey level (``paper_level``, from
    ``_work_array``) and no shadow on it (a photo of an evenly lit page can be as clean once
    compressed)."""
    if min(a.shape) < _MIN_PHOTO_SIDE:
        return True
    if paper_level is None:
        return False
    paper = a if paper_level >= 128 else 255 - a  # (turned so that the paper is light)
    return _even_level(paper, _small_copy(paper), _INK_SHADE) is not None


def _small_copy(a: np.ndarray) -> np.ndarray:
    """``a`` area-reduced to about ``_BACKGROUND_SIDE`` on its short side."""
    h, w = a.shape
    scale = _BACKGROUND_SIDE / min(h, w)
    return cv2.resize(a, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def _closing(small: np.ndarray, k: int) -> np.ndarray:
    """A grey-level closing by a k x k square: the light paper over any darker feature narrower than k."""
    return cv2.morphologyEx(small, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (k, k)),
                            borderType=cv2.BORDER_REPLICATE)


def _pieces_holding(mask: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """The 8-connected pieces of ``mask`` (uint8) that hold a pixel of ``seeds`` (bool): a bool mask."""
    count, labels = cv2.connectedComponents(mask, connectivity=8)
    held = np.zeros(count, bool)
    held[labels[seeds]] = True
    held[0] = False
    return held[labels]


def _percentiles(counts: np.ndarray, shares: tuple[float, ...]) -> list[int]:
    """Grey levels at ``shares`` (0..1) of a 256-bin histogram."""
    cumulative = np.cumsum(counts)
    return np.searchsorted(cumulative, np.asarray(shares) * cumulative[-1]).tolist()


def _ink_is_dark(a: np.ndarray, digital: bool) -> bool:
    """Dark ink on light paper (photos, scans, the web canvas) or light ink on dark (MNIST itself)?

    Light ink needs a dark background (a border band whose median is below mid-grey) and a light
    extreme further from it than the dark one. In images of 100 px and more the band must also be
    even (its middle half within 32 grey levels): photos, with their uneven light, count as dark
    ink on paper. A digital image (``_digital``) may be cropped to its digit, whose strokes then
    reach the band (a 16x16 scan of a digit scaled to fill the box, or the same enlarged). In a
    photo, light pixels (nearer the light extreme than the band) over ``_LIGHT_INK_SHARE`` of the
    frame are a page on a dark desk that fills the band, not ink (MNIST's digits: 13 % on average,
    0.07 % of them over 30 %).
    """
    h, w = a.shape
    b = max(1, round(min(h, w) * 0.05))
    border = np.concatenate([a[:b].ravel(), a[-b:].ravel(), a[:, :b].ravel(), a[:, -b:].ravel()])
    q1, background, q3 = _percentiles(np.bincount(border, minlength=256), (0.25, 0.5, 0.75))
    # (a digital image cropped to its digit has ink there)
    uneven = q3 - q1 > 32 and not digital
    if background >= 128 or uneven:
        return True
    lo, hi = _percentiles(np.bincount(a.ravel(), minlength=256), (0.005, 0.995))
    if background - lo >= hi - background:
        return True
    # a page on a dark desk that fills the border band: in a photo, light ink is a small share of the frame
    return not digital and float((a > (background + hi) / 2).mean()) >= _LIGHT_INK_SHARE


def _one_level(a: np.ndarray) -> np.float32:
    """The brightness of paper lit evenly: the image's 90th percentile (ink covers less than 90 %)."""
    return np.float32(max(_percentiles(np.bincount(a.ravel(), minlength=256), (0.9,))[0], 1))


def _darkness(a: np.ndarray, digital: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """How much darker than its paper each pixel is: 0 (paper) .. 1 (black), float32; and where the
    page ends short of the frame (``_paper``), or None.

    Digital images (``_digital``: drawings, MNIST itself, digits cropped and enlarged) have one
    paper level; so have photos and scans of pages lit evenly (``_paper``). In a photo, darkness is
    measured against at least ``_NOISE_FLOOR`` of the brightest paper: on a near-black desk a few
    grey levels of sensor noise would otherwise be a third of its light, and read as ink.
    """
    paper, beyond = (_one_level(a), None) if digital else _paper(a)
    darkness = paper - a
    darkness /= paper if digital else np.maximum(paper, np.float32(_NOISE_FLOOR * float(np.max(paper))))
    return np.maximum(darkness, 0.0, out=darkness), beyond


def _paper(a: np.ndarray) -> tuple[np.ndarray | np.float32, np.ndarray | None]:
    """The paper's brightness behind each pixel of a photo or scan, estimated on a small copy, and
    where the page ends short of the frame (a uint8 mask: the desk, a shadow from outside), or None.

    A morphological closing (the ink taken away) gives an upper envelope, and the local mean of
    the pixels that are paper by the envelope's account (normalised convolution) follows
    gradients, vignettes and soft shadows, where the envelope alone would lie above the paper.
    At the page's edge it is capped (``_cap_at_page_edges``). A page lit evenly has one level
    (``_even_level``).
    """
    h, w = a.shape
    small = _small_copy(a)
    level = _even_level(a, small)
    if level is not None:
        return level, None
    k = int(min(small.shape) * _CLOSING_SHARE) | 1
    envelope = _closing(small, k).astype(np.float32)
    small = small.astype(np.float32)
    rough = 1.0 - small / np.maximum(envelope, 1.0)
    paper_weight = (rough < max(_MIN_CONTRAST, _PAPER_SHARE * float(rough.max()))).astype(np.float32)
    paper_weight = cv2.erode(paper_weight, np.ones((3, 3), np.uint8))
    sigma = min(small.shape) * 0.025
    paper = (cv2.GaussianBlur(small * paper_weight, (0, 0), sigma) + 0.05 * envelope) / (
        cv2.GaussianBlur(paper_weight, (0, 0), sigma) + 0.05)
    paper, beyond = _cap_at_page_edges(small, paper)
    paper = cv2.resize(np.maximum(paper, 1.0), (w, h), interpolation=cv2.INTER_LINEAR)
    return paper, cv2.resize(beyond, (w, h), interpolation=cv2.INTER_NEAREST) if beyond.any() else None


def _cap_at_page_edges(small: np.ndarray, paper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``paper`` (the local estimate on the small copy) capped where the page meets a desk or a
    sharp-edged shadow, darker than the page and wider than a stroke; and where that is (uint8).

    There the local mean takes in the page's light, and a strip of the darker side would read as
    ink: a rim that joins a digit, or is taken for one. The cap is a closing half as wide as the
    envelope's, eroded a pixel (the resize back blurs its step). It applies only where it lies well
    below the estimate, in pieces that reach the frame's edge: a desk or a shadow comes in from
    outside, a digit's bunched thick strokes do not. Where such a piece narrows towards a corner
    (a page turned in the frame), the closing would fill it. So the cap is then taken again from a
    closing with the frame's outside dark, which keeps a desk that reaches the frame dark however
    narrow it gets, in that closing's pieces that hold a piece of the first (a stroke that leaves
    the frame holds none).
    """
    share, below = _EDGE_CAP
    k = int(min(small.shape) * _CLOSING_SHARE * share) | 1
    square = np.ones((3, 3), np.uint8)
    frame = np.ones(small.shape, bool)
    frame[1:-1, 1:-1] = False
    cap = cv2.erode(_closing(small, k), square, borderType=cv2.BORDER_REPLICATE)
    wide = _pieces_holding((cap < paper * (1.0 - below)).astype(np.uint8), frame)
    outside_dark = cv2.copyMakeBorder(small, k, k, k, k, cv2.BORDER_CONSTANT, value=0)
    cap = cv2.erode(_closing(outside_dark, k)[k:-k, k:-k], square, borderType=cv2.BORDER_REPLICATE)
    beyond = _pieces_holding((cap < paper * (1.0 - below)).astype(np.uint8), wide)
    return np.where(beyond, np.minimum(paper, cap), paper), beyond.astype(np.uint8)


def _even_level(a: np.ndarray, small: np.ndarray, darkest: float = math.inf) -> np.float32 | None:
    """The paper's one level if the page is lit evenly (a scan, a drawing), else None.

    There the local estimate would only sink into the wide strokes of a blurred or coarse digit
    and cut them apart. Evenly lit: a closing half the side wide (``small``, ink and small shadows
    taken away) varies by less than ``_EVEN_PAPER``, and no shadow with a sharp edge lies inside:
    a grey plateau, flat, wider than any stroke, and of one shade (a blurred stroke is nowhere
    flat; the blocks of an enlarged thumbnail are flat, and bridged they can be as wide, but each
    block has its own shade). Plateaus at least ``darkest`` dark are not counted (ink, in a digital
    image).
    """
    half = min(small.shape) // 2 | 1
    wide = _closing(small, half)
    low, high = _percentiles(np.bincount(wide.ravel(), minlength=256), (0.01, 0.99))
    if high - low > _EVEN_PAPER * high:
        return None
    level = _one_level(a)
    shade = 1.0 - small.astype(np.float32) / level
    slope = np.abs(cv2.Sobel(shade, cv2.CV_32F, 1, 0)) + np.abs(cv2.Sobel(shade, cv2.CV_32F, 0, 1))
    grey, flat, bridge, size = _PLATEAU
    flat_grey = (shade > grey) & (shade < darkest) & (slope < 8 * flat)  # (Sobel's 3x3 weighs a slope 8 times)
    flat_grey = flat_grey.astype(np.uint8)
    b = max(3, int(min(small.shape) * bridge)) | 1
    plateau = cv2.morphologyEx(flat_grey, cv2.MORPH_CLOSE, np.ones((b, b), np.uint8))  # strokes across it
    m = max(3, int(min(small.shape) * size))
    wide_enough = cv2.erode(plateau, np.ones((m, m), np.uint8))
    if not wide_enough.any():
        return level
    _, labels = cv2.connectedComponents(plateau)
    width, share = _PLATEAU_SHADE
    for k in np.unique(labels[wide_enough > 0]):
        shades = np.sort(shade[(labels == k) & (flat_grey > 0)])
        if not shades.size:
            continue
        most_of_one_shade = np.max(np.searchsorted(shades, shades + width) - np.arange(shades.size))
        if most_of_one_shade >= share * shades.size:
            return None  # a shadow
    return level


def _threshold(darkness: np.ndarray) -> tuple[float, float]:
    """(peak, cut): the ink's darkness (robust maximum) and the mask threshold."""
    smooth = cv2.blur(darkness, (3, 3))
    peak = float(smooth.max())
    return peak, max(_MIN_CONTRAST, _PEAK_SHARE * peak)


def _ink_mask(darkness: np.ndarray, cut: float, peak: float, lined: bool) -> np.ndarray:
    """The ink: darker than ``cut``, and fainter ink down to ``_RIM_SHARE`` of the peak where it
    touches that (hysteresis, as in Canny's edge detector), so a blurred or coarse stroke that
    fades between its dark cores stays whole. Not on lined paper, where what is left of the lines
    would join the digit."""
    strong = (darkness > cut).astype(np.uint8)
    if lined:
        return strong
    faint = (darkness > max(_MIN_CONTRAST, _RIM_SHARE * peak)).astype(np.uint8)
    return _pieces_holding(faint, strong > 0).astype(np.uint8)


def _line_centres(rhos: np.ndarray, width: int) -> list[float]:
    """One distance per line: the Hough transform answers a few neighbouring ones for each."""
    groups: list[list[float]] = []
    for rho in np.sort(rhos):
        if groups and rho - groups[-1][-1] <= width:
            groups[-1].append(float(rho))
        else:
            groups.append([float(rho)])
    return [float(np.mean(g)) for g in groups]


def _crosses_frame(candidates: np.ndarray, rho: float, theta: float) -> bool:
    """Does the line (``rho``, ``theta``) run through ``candidates`` from edge to edge of the frame
    (covered over half its length, and within 15 % of both ends)? A digit's long straight stroke
    (a 1, a 7) ends inside the frame; a paper line does not (or only at the page's edge)."""
    h, w = candidates.shape
    c, s = math.cos(theta), math.sin(theta)
    if abs(s) >= abs(c):  # along the rows: one point per column
        xs = np.arange(w, dtype=np.float32)
        ys = (rho - xs * c) / s
    else:
        ys = np.arange(h, dtype=np.float32)
        xs = (rho - ys * s) / c
    inside = (xs >= 0) & (xs <= w - 1) & (ys >= 0) & (ys <= h - 1)
    if inside.sum() < 2:
        return False
    covered = candidates[np.rint(ys[inside]).astype(int), np.rint(xs[inside]).astype(int)] > 0
    where = np.flatnonzero(covered)
    n = covered.size
    return covered.mean() >= 0.5 and where.size > 0 and where[0] <= 0.15 * n and where[-1] >= 0.85 * n


def _ruling(found: list[float], theta: float, shape: tuple[int, int], width: int) -> list[float]:
    """The distances of a family of parallel paper lines, with the evenly spaced ones the Hough
    transform could not see whole (cut short by the frame's corners) added when the found ones
    are evenly spaced (``width``: a line's band)."""
    if len(found) < 3:
        return found
    gaps = np.diff(found)
    spacing = float(np.median(gaps))
    if spacing < 2 * width or gaps.min() < 0.8 * spacing or gaps.max() > 1.2 * spacing:
        return found
    h, w = shape
    corners = [x * math.cos(theta) + y * math.sin(theta) for x, y in ((0, 0), (w, 0), (0, h), (w, h))]
    lines = list(found)
    rho = found[0] - spacing
    while rho >= min(corners):
        lines.append(rho)
        rho -= spacing
    rho = found[-1] + spacing
    while rho <= max(corners):
        lines.append(rho)
        rho += spacing
    return lines


def _remove_paper_lines(darkness: np.ndarray) -> bool:
    """Take ruled / squared paper lines out of ``darkness`` (in place); True when there were any.

    A paper line is a thin, straight structure across the frame from edge to edge, within 15
    degrees of horizontal or vertical: it is found by a Hough transform among the thin structures (a
    morphological top-hat) of a half-size copy; the evenly spaced lines of a ruling that the frame's
    corners cut short are added. Along it, pixels about as dark as the line lose the
    line's darkness; ink much darker than the line (where the digit crosses it) stays as it is.
    """
    h, w = darkness.shape
    half = cv2.resize(darkness, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    short = min(half.shape)
    k = max(3, int(2 * _LINE_MAX_THICKNESS * short) | 1)  # wider than any paper line
    thin = cv2.morphologyEx(half, cv2.MORPH_TOPHAT, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    level = max(_LINE_MIN_CONTRAST, 4.0 * float(np.median(thin[::4, ::4])))
    candidates = (thin > level).astype(np.uint8)
    near_candidates = cv2.dilate(candidates, np.ones((3, 3), np.uint8))  # (a line's centre may be off by a pixel)
    tilt = np.deg2rad(15)
    band = np.zeros((h, w), np.uint8)
    centre = np.zeros((h, w), np.uint8)
    found = False
    for extent, low, high in ((half.shape[1], np.pi / 2 - tilt, np.pi / 2 + tilt),  # along the rows
                              (half.shape[0], 0.0, tilt), (half.shape[0], np.pi - tilt, np.pi)):  # columns
        lines = cv2.HoughLines(candidates, 1, np.pi / 360, int(_LINE_LENGTH_SHARE * extent),
                               min_theta=low, max_theta=high)
        if lines is None:
            continue
        theta = float(np.median(lines[:, 0, 1]))
        across = [rho for rho in _line_centres(lines[:, 0, 0], k) if _crosses_frame(near_candidates, rho, theta)]
        if not across:
            continue
        for rho in _ruling(across, theta, half.shape, k):
            c, s = math.cos(theta), math.sin(theta)
            x0, y0 = 2 * rho * c, 2 * rho * s  # back to full size
            reach = 2 * max(h, w)
            ends = (int(x0 - reach * s), int(y0 + reach * c)), (int(x0 + reach * s), int(y0 - reach * c))
            cv2.line(band, *ends, 1, thickness=2 * k + 1)
            cv2.line(centre, *ends, 1, thickness=1)
        found = True
    if found:
        # the lines' own darkness: along their centres (where the digit covers a small part of
        # their length), the darkest pixel nearby
        near = cv2.dilate(darkness, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))[centre.astype(bool)]
        line_level = float(np.median(near))
        on_band = band.astype(bool)
        values = darkness[on_band]
        faint = values < 2.0 * line_level
        values[faint] -= np.minimum(values[faint], 1.2 * line_level)
        darkness[on_band] = values
    return found


def _digit_pieces(
    mask: np.ndarray, darkness: np.ndarray, digital: bool, beyond: np.ndarray | None
) -> tuple[tuple[np.ndarray, tuple[int, int]] | None, str | None]:
    """The connected pieces of ink that make the digit: (its mask cropped to its box, the box's
    top-left corner), or None and why not.

    The pieces are the outer contours of the mask (an order of magnitude faster than labelling
    every pixel); a piece's size is its pixel count, estimated as the contour's area plus half
    its length.
    """
    h, w = mask.shape
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None, "no ink found: the image looks blank"
    boxes = [cv2.boundingRect(c) for c in contours]
    area = [cv2.contourArea(c) + cv2.arcLength(c, True) / 2 + 1 for c in contours]
    if min(h, w) >= _MIN_PHOTO_SIDE:  # (in a small digital image a stroke may run along the edge)
        # the desk beyond the page's edge, shadows at the frame's edge: in touch with the frame over
        # a good part of its side (a digit's stroke that leaves the frame touches it over its
        # width only), or faint where they touch it (the rim where a shadow's edge meets the frame).
        # In a digital image a digit cropped to its box touches it as much, but reaches across the
        # frame from every side it touches, where the desk seen past an overexposed page does not.
        # Where the page ends inside the frame (the paper capped there), a piece lying mostly along
        # that line is the rim of the desk or the shadow; a digit that crosses a shadow's edge is not.
        edge = _EDGE_CONTACT * min(h, w)
        largest = max(area)
        band = None
        if beyond is not None:  # where the page ends short of the frame, a pixel of the small copy either side
            r = 2 * math.ceil(min(h, w) / _BACKGROUND_SIDE) + 1
            band = cv2.dilate(beyond, np.ones((r, r), np.uint8)) - cv2.erode(beyond, np.ones((r, r), np.uint8))
        for i, (x, y, bw, bh) in enumerate(boxes):
            if area[i] < _MIN_PIECE_MASS * largest:
                continue
            piece = mask[y : y + bh, x : x + bw]
            if band is not None:
                along = int((band[y : y + bh, x : x + bw] & piece).sum())
                if along and along >= _RIM_ALONG * int(piece.sum()):
                    area[i] = 0
                    continue
            if not (x == 0 or y == 0 or x + bw == w or y + bh == h):
                continue
            contact = (int(piece[0].sum()) if y == 0 else 0) + (int(piece[-1].sum()) if y + bh == h else 0) + (
                int(piece[:, 0].sum()) if x == 0 else 0) + (int(piece[:, -1].sum()) if x + bw == w else 0)
            faint = float(darkness[y : y + bh, x : x + bw][piece > 0].mean()) < _MIN_INK
            across = digital and (2 * bh >= h or not (y == 0 or y + bh == h)) and (
                2 * bw >= w or not (x == 0 or x + bw == w))
            if faint or (contact >= edge and not across):
                area[i] = 0
    main = max(range(len(area)), key=area.__getitem__)
    if area[main] <= 0:
        return None, "no ink found: only the edges of the page or shadows"
    keep = [i for i in range(len(area)) if i != main and area[i] >= _MIN_PIECE_MASS * area[main]]
    x0, y0, bw, bh = boxes[main]
    x1, y1 = x0 + bw, y0 + bh
    chosen = [main]
    changed = True
    while changed:  # grow the digit by the pieces near it
        changed = False
        gap = _GROUP_GAP * max(x1 - x0, y1 - y0)
        for i in keep:
            if i in chosen:
                continue
            x, y, bw, bh = boxes[i]
            if max(x0 - (x + bw), x - x1, y0 - (y + bh), y - y1) <= gap:
                chosen.append(i)
                x0, y0, x1, y1 = min(x0, x), min(y0, y), max(x1, x + bw), max(y1, y + bh)
                changed = True
    size = max(x1 - x0, y1 - y0)
    if size < max(_MIN_DIGIT_PIXELS, _MIN_DIGIT_SIZE * min(h, w)):
        return None, "no digit found: only specks or marks too small to be a digit"
    # the chosen pieces, filled, and the mask again inside them (their holes: a 0's, an 8's loops)
    digit = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.drawContours(digit, [contours[i] for i in chosen], -1, 1, thickness=cv2.FILLED, offset=(-x0, -y0))
    digit &= mask[y0:y1, x0:x1]
    # the frame's darkest ink may lie in what was left out (the desk, a shadow along the edge), and
    # the piece kept be only its faint rim: the digit's own ink must be as dark as ink is
    if float(cv2.blur(darkness[y0:y1, x0:x1], (3, 3))[digit > 0].max()) < _MIN_INK:
        return None, "no ink found: only the edges of the page or shadows"
    return (digit, (y0, x0)), None


def _ink_shape(digit: np.ndarray) -> tuple[float, float, float, float, float]:
    """(pen, length, across, tilt, evenness) of the ink ``digit`` (a 0/1 mask): the pen's width
    (the widest disc inside the ink), the ink's extent along its main axis and across it (pixels),
    the main axis's angle from horizontal (0-90 degrees), and how even its thickness is along that
    axis away from the ends (the thickest slice across it over the thinnest; 1 for a band)."""
    padded = cv2.copyMakeBorder(digit, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    # (a pixel's distance to the background counts its own half: a band n pixels wide peaks at (n + 1) / 2)
    pen = max(2.0 * float(cv2.distanceTransform(padded, cv2.DIST_L2, 5).max()) - 1.0, 1.0)
    ys, xs = np.nonzero(digit)
    points = np.stack([xs, ys], axis=1).astype(np.float64)
    points -= points.mean(axis=0)
    _, axes = np.linalg.eigh(points.T @ points)  # ascending: the minor axis first
    along, across = points @ axes[:, 1], points @ axes[:, 0]
    tilt = math.degrees(math.atan2(abs(axes[1, 1]), abs(axes[0, 1])))
    # slices one pixel thick across the main axis, over half a pen away from both ends (the round caps)
    slot = np.floor(along - along.min()).astype(np.int64)
    margin = math.ceil(pen / 2)
    inner = (slot >= margin) & (slot < slot.max() - margin)
    evenness = 1.0
    if inner.any():
        slots, where = np.unique(slot[inner], return_inverse=True)
        low = np.full(len(slots), np.inf)
        high = np.full(len(slots), -np.inf)
        np.minimum.at(low, where, across[inner])
        np.maximum.at(high, where, across[inner])
        thickness = high - low + 1.0
        evenness = float(np.percentile(thickness, 95) / max(np.percentile(thickness, 5), 1.0))
    return pen, float(np.ptp(along)) + 1.0, float(np.ptp(across)) + 1.0, tilt, evenness


def _dot_or_dash(digit: np.ndarray, corner: tuple[int, int], darkness: np.ndarray, peak: float) -> str | None:
    """"a dot" or "a dash" when the ink ``digit`` (its mask, at ``corner`` of ``darkness``) is only
    that, alone on the page with a clear edge; None for anything else."""
    pen, length, across, tilt, evenness = _ink_shape(digit)
    h, w = darkness.shape
    if length <= _DOT_EXTENT * pen and max(digit.shape) <= _DOT_FRAME * min(h, w):
        mark = "a dot"
    elif across <= _DASH_ACROSS * pen and tilt <= _DASH_TILT and evenness <= _DASH_EVEN:
        mark = "a dash"
    else:
        return None
    y0, x0 = corner
    ink = np.zeros((h, w), np.uint8)
    ink[y0 : y0 + digit.shape[0], x0 : x0 + digit.shape[1]] = digit
    r = max(1, round(pen / 2))
    near = cv2.dilate(ink, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))).astype(bool)
    ink = ink.astype(bool)
    faint = darkness > max(_FAINT_INK[0], _FAINT_INK[1] * peak)
    own = float(darkness[ink].sum())
    rest = float(darkness[faint & ~near].sum())
    rim = int(np.count_nonzero(faint & near & ~ink))
    if rest > _LONE_REST * own or rim > _SHARP_RIM * np.count_nonzero(ink):
        return None
    return mark


def _stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width in pixels: 2 * area / contour length."""
    contours, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    perimeter = sum(cv2.arcLength(c, True) for c in contours)
    return 2.0 * float(np.count_nonzero(mask)) / max(perimeter, 1.0)


def _normalise_strokes(ink: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Thin blobby strokes (a small digit drawn with a thick pen) and thicken hairlines to MNIST's width."""
    h, w = mask.shape
    size = max(h, w)
    width = _stroke_width(mask)
    in_box = width * _DIGIT_BOX / size
    if _STROKE_RANGE[0] <= in_box <= _STROKE_RANGE[1]:
        return ink
    target = _STROKE_TARGET[1] if in_box > _STROKE_RANGE[1] else _STROKE_TARGET[0]
    # erode/dilate by r on each side: (width - 2r) * 20 / (size - 2r) = target
    two_r = (width - target * size / _DIGIT_BOX) / (1 - target / _DIGIT_BOX)
    r = int(round(abs(two_r) / 2))
    if r < 1:
        return ink
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    if two_r > 0:
        return cv2.erode(ink, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    padded = cv2.copyMakeBorder(ink, r, r, r, r, cv2.BORDER_CONSTANT, value=0)
    return cv2.dilate(padded, kernel)


def _fit_mnist(ink: np.ndarray) -> np.ndarray:
    """The MNIST recipe: fit into 20x20 keeping the aspect ratio, centre of mass at (14, 14)."""
    out = np.zeros((IMAGE_SIDE, IMAGE_SIDE), np.float32)
    rows = np.flatnonzero((ink > 0.1).any(axis=1))
    cols = np.flatnonzero((ink > 0.1).any(axis=0))
    if not rows.size:
        return out
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = crop.shape
    scale = _DIGIT_BOX / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    if (nh, nw) != (h, w):
        crop = cv2.resize(crop, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    # (not cv2.moments: it reads an array one or two columns wide, a narrow "1", as a contour)
    mass = float(crop.sum())
    if mass <= 0:
        return out
    cy = float(crop.sum(axis=1) @ np.arange(nh, dtype=np.float32)) / mass
    cx = float(crop.sum(axis=0) @ np.arange(nw, dtype=np.float32)) / mass
    oy = min(max(math.floor(_DIGIT_CENTRE - cy + 0.5), 0), IMAGE_SIDE - nh)
    ox = min(max(math.floor(_DIGIT_CENTRE - cx + 0.5), 0), IMAGE_SIDE - nw)
    out[oy : oy + nh, ox : ox + nw] = crop
    np.maximum(out, 0.0, out=out)  # (linear enlarging never overshoots; this keeps it so)
    peak = out.max()
    if peak > 0:
        out *= 1.0 / peak
    return out


def find_digit(image: Image.Image) -> Extracted:
    """Find the digit in a photo, scan or drawing and make it MNIST-like (see ``prepare_digit``).

    ``reason`` says in words why there is nothing to classify (a blank page, only specks, only
    paper lines or shadows, only a dot or a dash); then ``pixels`` is all zeros.
    """
    empty = np.zeros((IMAGE_SIDE, IMAGE_SIDE), np.float32)
    a, paper_level = _work_array(image)
    digital = _digital(a, paper_level)
    if not _ink_is_dark(a, digital):
        a = 255 - a
    darkness, beyond = _darkness(a, digital)
    peak, cut = _threshold(darkness)
    if peak < _MIN_INK:
        return Extracted(empty, "no ink found: the image looks blank")
    lined = min(a.shape) >= _MIN_PHOTO_SIDE and _remove_paper_lines(darkness)
    if lined:
        peak, cut = _threshold(darkness)
        if peak < _MIN_INK:
            return Extracted(empty, "no digit found: only the lines of the paper")
    mask = _ink_mask(darkness, cut, peak, lined)
    found, reason = _digit_pieces(mask, darkness, digital, beyond)
    if found is None:
        return Extracted(empty, reason)

    digit, (y0, x0) = found
    mark = _dot_or_dash(digit, (y0, x0), darkness, peak)
    if mark is not None:
        return Extracted(empty, f"no digit found: only {mark}")
    h, w = digit.shape
    pad = 2  # room for the soft edge
    top, left = min(y0, pad), min(x0, pad)
    digit = cv2.copyMakeBorder(digit, top, pad, left, pad, cv2.BORDER_CONSTANT, value=0)
    darkness = darkness[y0 - top : y0 + h + pad, x0 - left : x0 + w + pad]
    digit = digit[: darkness.shape[0], : darkness.shape[1]]
    values = darkness[digit > 0]
    core = float(np.partition(values, int(0.9 * (values.size - 1)))[int(0.9 * (values.size - 1))])
    ink = darkness * (1.0 / max(core, 1e-3))
    np.minimum(np.maximum(ink, 0.0, out=ink), 1.0, out=ink)
    ink *= cv2.dilate(digit, np.ones((3, 3), np.uint8))  # the digit and its soft edge, nothing else
    ink = _normalise_strokes(ink, digit)
    return Extracted(_fit_mnist(ink))


def prepare_digit(image: Image.Image) -> np.ndarray:
    """Normalise a digit image the way MNIST was made -> (28, 28) float32 in 0..1.

    1. Polarity: dark ink on light paper is the usual case; light ink on a dark background
       (MNIST itself) is inverted first.
    2. Light: the paper's brightness (a morphological closing of a small copy, wider than any
       stroke) divides the image, so gradients, vignettes and soft shadows go away; what is left
       is each pixel's darkness relative to its paper. A page lit evenly (a scan, a drawing) has
       one paper level, so the wide strokes of a blurred or coarse digit stay whole.
    3. Ink mask: darker than 45 % of the ink's own darkness and at least 20 % darker than the
       paper, and fainter ink down to 30 % where it touches that (a blurred stroke stays whole);
       ruled or squared paper lines (straight, thin, across the frame) are subtracted, and on
       such paper the fainter ink is left out.
    4. The digit: the connected component with the most ink and the pieces near it; specks,
       the page's edges and shadow borders along the frame, and the rims along where the page
       ends inside it, are left out. Ink that is only a dot or a flat line (a dash), alone and
       with a clear edge, is not a digit; nor are pieces whose darkest ink is as faint as a
       shadow's rim.
    5. Strokes much wider or thinner than MNIST's (relative to the digit's size) are eroded or
       dilated to MNIST's width.
    6. Fit into 20x20 keeping the aspect ratio (area-averaged), centre of mass at (14, 14) in
       28x28, brightest pixel 1.

    Nothing to classify gives all zeros (``find_digit`` says why).
    """
    return find_digit(image).pixels
