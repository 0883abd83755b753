"""Uploaded bytes -> one greyscale (Pillow 'L') image, within limits; anything else is a clear ImageError.

Accepts PNG, JPEG, WebP, BMP, GIF (first frame) and TIFF (first page) in any pixel mode, honours
the EXIF orientation and flattens transparency.
"""

from __future__ import annotations

import io
import re
import warnings

import numpy as np
from PIL import Image, ImageOps

DEFAULT_MAX_PIXELS = 40_000_000

#: Pillow format ids we decode; everything else is refused.
ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF")

_UNREADABLE = "the file is not an image we can read (PNG, JPEG, WebP, BMP, GIF, TIFF)"
_DAMAGED = (
    "the image file is damaged or incomplete (truncated?) and could not be decoded"
)


class ImageError(ValueError):
    """The upload is not a usable image (HTTP 400). The message is for the user."""

    status_code = 400


class ImageTooLarge(ImageError):
    """The upload's dimensions exceed the pixel limit (HTTP 413)."""

    status_code = 413


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
        raise ImageError("the file is empty; " + _UNREADABLE.replace("the file is not an image we can read", "send an image"))
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
