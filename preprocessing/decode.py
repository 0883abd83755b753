"""Uploaded bytes -> one greyscale (Pillow 'L') image, within limits; anything else is a clear ImageError.

Accepts PNG, JPEG, WebP, BMP, GIF (first frame) and TIFF (first page) in any pixel mode, honours
the EXIF orientation and flattens transparency.

Decoding costs what the header declares, not what the file weighs: a 25 KB RLE BMP can declare
40 megapixels, a 35-byte GIF a 6000x6000 screen, an 85 KB progressive JPEG 5000 scans (45 s to
decode here). So :func:`inspect_image` reads the header only and prices the decode in *work*:
the pixels a decoder produces at full size, weighted where a decode costs more per pixel.

=========================  ===========================================================
format                     work
=========================  ===========================================================
baseline JPEG              pixels after DCT scaling (``Image.draft``: 1/2 .. 1/8 a side),
                           decoded as grey (the luma plane)
progressive JPEG           full-size pixels x scans / 10 (its coefficients are kept at
                           full size and every scan passes over them; 10 is a normal
                           progressive JPEG's scan count)
RLE-compressed BMP         pixels x 40 (Pillow decodes RLE in Python: ~0.35 us a pixel)
everything else            pixels x bytes a pixel (grey 1, colour 3, with alpha 4,
                           16-bit 2, 32-bit 4); for GIF the logical screen, the canvas
                           its first frame is drawn on
=========================  ===========================================================

Work is 8-bit grey pixels' worth of decoding: time and memory both follow the bytes decoded.

A decode whose work is over ``max_pixels`` is refused (413) before any pixel is decoded, and so is
a JPEG over ``max_jpeg_pixels`` (JPEG photos are decoded reduced, so they may be larger). Once
decoded, an image larger than the stems need is box-reduced in its own mode to at most
:data:`WORK_MAX_SIDE` pixels a side before any other processing: one decode's memory is the
decoded image itself (at most ``max_pixels`` x 4 bytes), never float copies of it.
"""

from __future__ import annotations

import io
import math
import re
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile

#: Largest decode work (module docstring): an 8-bit grey image of this many pixels, a third of
#: that in RGB (decoded at full size: every format but JPEG).
DEFAULT_MAX_PIXELS = 40_000_000
#: Largest JPEG, width x height: JPEGs are decoded reduced (DCT scaling), so phone photos of
#: 48-108 megapixels cost a few megapixels of work.
DEFAULT_MAX_JPEG_PIXELS = 120_000_000
#: Decoded images larger than this (longest side) are reduced to it: what the stems work at.
WORK_MAX_SIDE = 1024

#: Pillow format ids we decode; everything else is refused.
ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF")

_UNREADABLE = "the file is not an image we can read (PNG, JPEG, WebP, BMP, GIF, TIFF)"
_DAMAGED = (
    "the image file is damaged or incomplete (truncated?) and could not be decoded"
)
_NORMAL_JPEG_SCANS = 10  # libjpeg's progressive script for colour images
_RLE_BMP_COST = 40  # Pillow's BMP RLE decoder is pure Python: ~40x a C decoder's time per pixel
_BMP_RLE = (1, 2)  # BI_RLE8, BI_RLE4


class ImageError(ValueError):
    """The upload is not a usable image (HTTP 400). The message is for the user."""

    status_code = 400


class ImageTooLarge(ImageError):
    """The upload's dimensions or decode work exceed the limits (HTTP 413)."""

    status_code = 413


class BatchTooCostly(Exception):
    """Image ``index`` of a batch is a bad upload (``error``) or takes the batch past its limit."""

    def __init__(self, index: int, error: ImageError):
        super().__init__(str(error))
        self.index = index
        self.error = error


@dataclass(frozen=True)
class Declared:
    """What an image's header says, before any pixel is decoded."""

    format: str  #: Pillow's format id (JPEG, PNG, ...)
    width: int
    height: int
    mode: str
    work: int  #: decode work in full-size pixels (module docstring)

    @property
    def pixels(self) -> int:
        return self.width * self.height


def _format_pixels(n: int) -> str:
    if n >= 1_000_000:
        mp = n / 1_000_000
        return f"{mp:.3g} megapixels" if mp < 1000 else f"{mp:,.0f} megapixels"
    return f"{n:,} pixels"


def _too_large(width: int, height: int, limit: int, what: str = "") -> ImageTooLarge:
    return ImageTooLarge(
        f"image is {width}×{height} = {_format_pixels(width * height)}; "
        f"the limit{what} is {_format_pixels(limit)}"
    )


def _too_large_from_pillow(exc: Exception, max_pixels: int) -> ImageTooLarge:
    # Pillow's own bomb check (past twice Image.MAX_IMAGE_PIXELS) fires inside Image.open, before
    # we see .size; its message carries the pixel count.
    m = re.search(r"\((\d+) pixels\)", str(exc))
    if m:
        return ImageTooLarge(
            f"image is {_format_pixels(int(m.group(1)))}; the limit is {_format_pixels(max_pixels)}"
        )
    return ImageTooLarge(f"image is too large; the limit is {_format_pixels(max_pixels)}")


def _check_bytes(data) -> bytes:
    if isinstance(data, (bytearray, memoryview)):
        data = bytes(data)
    if not isinstance(data, bytes):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    if not data:
        raise ImageError("the file is empty; " + _UNREADABLE.replace("the file is not an image we can read", "send an image"))
    return data


def _open(data: bytes, max_pixels: int) -> ImageFile.ImageFile:
    # Our own limits decide, so Pillow's DecompressionBombWarning is ignored; its error (past
    # twice Image.MAX_IMAGE_PIXELS, far beyond our limits) becomes ImageTooLarge.
    # (catch_warnings is process-global in Python < 3.14; the worst a race can do is leave this
    # one warning category ignored.)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
        except Image.DecompressionBombError as exc:
            raise _too_large_from_pillow(exc, max_pixels) from None
        except Exception as exc:  # any parser failure on untrusted bytes
            raise ImageError(_UNREADABLE) from exc
    if img.width <= 0 or img.height <= 0:
        img.close()
        raise ImageError(_UNREADABLE)
    return img


def _jpeg_scale(width: int, height: int, side: int) -> int:
    """The DCT scale (1, 2, 4 or 8) a JPEG is decoded at: the largest power of two up to the box
    reduction ``ceil(longest / side)`` the image needs; the box reduction does the rest."""
    factor = math.ceil(max(width, height) / side)
    return next(s for s in (8, 4, 2, 1) if s <= factor)


def _is_progressive(img: Image.Image) -> bool:
    return bool(img.info.get("progressive") or img.info.get("progression"))


def _bytes_per_pixel(img: Image.Image) -> int:
    """Bytes a pixel of ``img`` takes once decoded (and made reducible: palette to grey)."""
    mode = img.mode
    if mode in ("I", "F"):
        return 4
    if mode.startswith("I;16"):
        return 2
    if mode == "P":
        return 2 if _has_transparency(img) else 1
    return len(img.getbands()) if mode != "1" else 1


def _price(img: ImageFile.ImageFile, data: bytes, max_pixels: int, max_jpeg_pixels: int,
           side: int | None) -> Declared:
    """The header's declared size and decode work, checked against the limits (413)."""
    width, height = img.size
    pixels = width * height
    fmt = img.format or "?"
    size = f"{width}×{height} = {_format_pixels(pixels)}"
    limit = f"the limit is {_format_pixels(max_pixels)} of 8-bit grey"
    if fmt in ("JPEG", "MPO"):
        if pixels > max_jpeg_pixels:
            raise ImageTooLarge(f"image is {size}; the limit for JPEG photos is {_format_pixels(max_jpeg_pixels)}")
        if _is_progressive(img):
            # SOS markers cannot occur inside entropy-coded data (0xFF is stuffed there), so this
            # counts the scans (plus one per embedded thumbnail) without decoding anything
            scans = data.count(b"\xff\xda")
            work = pixels * scans // _NORMAL_JPEG_SCANS if scans > _NORMAL_JPEG_SCANS else pixels
            if work > max_pixels:
                raise ImageTooLarge(
                    f"this progressive JPEG ({size}, {scans} scans) costs as much to decode as "
                    f"{_format_pixels(work)}; {limit}: send it as a baseline (non-progressive) JPEG, or smaller"
                )
        else:
            scale = _jpeg_scale(width, height, side) if side else 1
            work = math.ceil(width / scale) * math.ceil(height / scale)  # decoded as grey (luma)
    elif fmt == "BMP" and img.info.get("compression") in _BMP_RLE:
        work = pixels * _RLE_BMP_COST
        if work > max_pixels:
            raise ImageTooLarge(
                f"this RLE-compressed BMP ({size}) costs as much to decode as {_format_pixels(work)} "
                f"(Pillow decodes RLE in Python); {limit}: send it as PNG, or smaller"
            )
    else:
        depth = _bytes_per_pixel(img)  # GIF: .size is the logical screen, the canvas Pillow allocates
        work = pixels * depth
        if work > max_pixels:
            if depth == 1:
                raise _too_large(width, height, max_pixels)
            raise ImageTooLarge(
                f"image is {size} of {img.mode} ({depth} bytes a pixel), as much to decode as "
                f"{_format_pixels(work)} of 8-bit grey; {limit}: send it as JPEG, or smaller"
            )
    return Declared(fmt, width, height, img.mode, work)


def inspect_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS,
                  max_jpeg_pixels: int = DEFAULT_MAX_JPEG_PIXELS, header_bytes: int | None = None) -> Declared:
    """Read an upload's header (no pixel data) and price its decode.

    Raises ImageError (400) when it is not an image we read, ImageTooLarge (413) when the decode
    would be over the limits (module docstring). Parsing a header runs Pillow's Python code over
    the header bytes, so its cost grows with the header's size (~0.7 ms per KiB of pathological
    header here); ``header_bytes`` bounds it: only that many bytes are parsed, and a header that
    does not end within them is an ImageError like any unreadable file.
    """
    data = _check_bytes(data)
    head = data[:header_bytes] if header_bytes else data
    with _open(head, max_pixels) as img:
        return _price(img, data, max_pixels, max_jpeg_pixels, WORK_MAX_SIDE)


_ORIENTATION = {  # EXIF orientation -> the transposition that undoes it (as ImageOps.exif_transpose)
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(0x0112, 1))  # the EXIF Orientation tag
    except Exception:  # malformed EXIF: keep the stored orientation
        return 1


def _reducible(img: Image.Image) -> Image.Image:
    """``img`` in a mode Image.reduce averages meaningfully (not palette indices or bits)."""
    mode = img.mode
    if mode == "P":
        return img.convert("LA" if _has_transparency(img) else "L")
    if mode == "PA":
        return img.convert("RGBA")
    if mode == "1":
        return img.convert("L")
    if mode.startswith("I;16"):
        return img.convert("I")
    return img


def reduce_to_side(img: Image.Image, side: int = WORK_MAX_SIDE) -> Image.Image:
    """``img`` box-reduced by a whole factor so its longest side is at most ``side`` (as is if it
    already is), in its own mode: the reduction costs one pass and no float copy."""
    factor = math.ceil(max(img.size) / side)
    if factor <= 1:
        return img
    return _reducible(img).reduce(factor)


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS,
                 max_jpeg_pixels: int = DEFAULT_MAX_JPEG_PIXELS,
                 max_side: int | None = WORK_MAX_SIDE, declared: Declared | None = None) -> Image.Image:
    """Decode uploaded bytes into a single-channel 'L' image.

    Accepts PNG, JPEG, WebP, BMP, GIF (first frame) and TIFF (first page) in any pixel mode;
    applies the EXIF orientation; flattens transparency (see ``to_grayscale``). Raises
    ``ImageError`` (400) for anything unreadable, truncated or of another format, and
    ``ImageTooLarge`` (413) when the decode would be over the limits -- checked from the header,
    before any pixel data is decoded (:func:`inspect_image`). Images whose longest side is over
    ``max_side`` come back box-reduced to it (JPEGs decoded reduced already); ``None`` keeps the
    full size.

    ``declared``: the header as :func:`inspect_image` read it for these bytes, under the same
    limits; it is then not priced again (Pillow still parses what it needs to find the pixel data).
    """
    data = _check_bytes(data)
    with _open(data, max_pixels) as img:
        if declared is None or (img.format, img.width, img.height, img.mode) != (
                declared.format, declared.width, declared.height, declared.mode):
            # not read yet, or not these bytes' header: the limits hold for what is decoded
            declared = _price(img, data, max_pixels, max_jpeg_pixels, max_side)
        if max_side and declared.format in ("JPEG", "MPO"):
            scale = _jpeg_scale(*img.size, max_side)
            if scale > 1 or img.mode == "RGB":
                # libjpeg scales the DCT (1/2..1/8 a side) and, for colour, gives its luma plane
                img.draft("L" if img.mode == "RGB" else None,
                          (max(1, img.width // scale), max(1, img.height // scale)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            try:
                img.load()
            except Image.DecompressionBombError as exc:
                raise _too_large_from_pillow(exc, max_pixels) from None
            except Exception as exc:
                raise ImageError(_DAMAGED) from exc
        orientation = _orientation(img)
        try:
            out = reduce_to_side(img, max_side) if max_side else img
            if orientation in _ORIENTATION:
                out = out.transpose(_ORIENTATION[orientation])
            return to_grayscale(out)
        except MemoryError:
            raise
        except Exception as exc:
            raise ImageError(_UNREADABLE) from exc


def _high_depth_to_l(img: Image.Image) -> Image.Image:
    """16-bit / 32-bit int / float pixels -> 8-bit by scaling (never clipping).

    I;16*: 0..65535 -> 0..255. I and F: values already in 0..255 are kept,
    0..65535 is scaled like 16 bit, F in 0..1 is taken as 0..1 intensity,
    anything else (negative, larger) is stretched min..max to 0..255; a constant image outside
    those ranges is clipped to 0..255.
    """
    mode = img.mode
    # float32 is exact for every 16-bit value and for the 0..255 scale; 32-bit ints past 2^24
    # lose low bits that rounding to 8 bits drops anyway
    a = np.array(img if mode in ("I", "F") else img.convert("I"), dtype=np.float32)
    if mode == "F":
        finite = np.isfinite(a)
        if not finite.any():
            return Image.new("L", img.size, 0)
        lo, hi = float(a[finite].min()), float(a[finite].max())
        np.nan_to_num(a, copy=False, nan=lo, posinf=hi, neginf=lo)
    else:
        lo, hi = float(a.min()), float(a.max())
    if mode.startswith("I;16"):
        a *= 255.0 / 65535.0
    elif mode == "F" and lo >= 0 and hi <= 1:
        a *= 255.0
    elif lo >= 0 and hi <= 255:
        pass
    elif lo >= 0 and hi <= 65535:
        a *= 255.0 / 65535.0
    elif hi > lo:
        a -= lo
        a *= 255.0 / (hi - lo)
    np.rint(a, out=a)
    np.clip(a, 0, 255, out=a)
    return Image.fromarray(a.astype(np.uint8))


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
