"""A hostile client's toolbox: files that are cheap to send and costly to decode, and HTTP requests
that lie, stall, or break the rules. Used by tests/test_hostile.py and ``make bench-hostile``.

Every file is generated here, in code, from its format's specification (no file is stored).
:func:`corpus` lists the attacks with the answers the service must give; :func:`run_attack` sends
one over a raw socket (so a request can stall, lie about its length or break HTTP) and reports the
status and the seconds it took.
"""

from __future__ import annotations

import io
import random
import socket
import struct
import time
import zlib
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import urlsplit

import numpy as np
from PIL import Image

# ---------------------------------------------------------------------------------------- files


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_bomb(width: int, height: int, color_type: int = 0) -> bytes:
    """A valid all-zero PNG (colour type 0 grey, 2 RGB, 6 RGBA; 8 bits), built without allocating
    the image: a few KiB that decode to width x height pixels."""
    channels = {0: 1, 2: 3, 6: 4}[color_type]
    row = bytes(1 + width * channels)
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row * 256) for _ in range(height // 256))
    idat += compressor.compress(row * (height % 256)) + compressor.flush()
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0))
            + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b""))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares a huge size and holds almost no data (a decompression bomb's header)."""
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + _png_chunk(b"IDAT", zlib.compress(bytes(64))) + _png_chunk(b"IEND", b""))


def png_chunk_flood(size: int = 256 * 1024) -> bytes:
    """A small valid PNG with ``size`` bytes of empty ancillary chunks before its pixels: Pillow
    walks each chunk in Python."""
    good = encode(Image.new("L", (28, 28), 0), "PNG")
    flood = _png_chunk(b"teSt", b"") * (size // 12)
    return good[:33] + flood + good[33:]


def png_idat_flood(size: int = 500 * 1024) -> bytes:
    """A valid 400x300 grey PNG whose pixel data is cut into as many IDAT chunks as fit in
    ``size`` bytes (~30 000): its header is small and its work light, so the service decodes it
    in a decoder thread, where Pillow still reads each chunk in Python."""
    pixels = np.random.default_rng(0).integers(0, 256, (300, 400), dtype=np.uint8)
    data = zlib.compress(b"".join(b"\x00" + row.tobytes() for row in pixels), 9)
    step = max(1, -(-len(data) // max(1, (size - len(data) - 64) // 12)))  # ceil: at most that many chunks
    head = struct.pack(">IIBBBBB", 400, 300, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", head)
            + b"".join(_png_chunk(b"IDAT", data[i:i + step]) for i in range(0, len(data), step))
            + _png_chunk(b"IEND", b""))


def rle_bmp_bomb(width: int = 6400, height: int = 6250) -> bytes:
    """An 8-bit RLE BMP of ~4 bytes a row: one pixel then end-of-line, which Pillow's (Python)
    RLE decoder pads to the full width byte by byte (~25 KiB declaring 40 megapixels)."""
    palette = b"\x00\x00\x00\x00\xff\xff\xff\x00"
    data = b"\x01\x00\x00\x00" * height + b"\x00\x01"
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(data), 2835, 2835, 2, 2)
    offset = 14 + len(info) + len(palette)
    return b"BM" + struct.pack("<IHHI", offset + len(data), 0, 0, offset) + info + palette + data


def gif_screen_bomb(width: int = 6000, height: int = 6000) -> bytes:
    """A 35-byte GIF: one 1x1 frame on a width x height logical screen."""
    screen = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    return screen + frame + b"\x3b"


def gif_comment_flood(size: int = 256 * 1024) -> bytes:
    """A small valid GIF with a comment extension of ``size`` one-byte sub-blocks before its image."""
    good = encode(Image.new("L", (28, 28), 0), "GIF")
    i = good.index(b"\x2c")
    return good[:i] + b"\x21\xfe" + b"\x01x" * (size // 2) + b"\x00" + good[i:]


def _jpeg_segments(data: bytes) -> list[tuple[int, int, int]]:
    """(marker, start, end) of a JPEG's segments after SOI; a scan's entropy-coded data is part of
    its SOS segment."""
    i, segments = 2, []
    while i < len(data):
        marker = data[i + 1]
        if marker == 0xD9:
            segments.append((marker, i, i + 2))
            break
        end = i + 2 + struct.unpack(">H", data[i + 2:i + 4])[0]
        if marker == 0xDA:
            while True:
                end = data.index(b"\xff", end)
                if data[end + 1] == 0 or 0xD0 <= data[end + 1] <= 0xD7:
                    end += 2
                    continue
                break
        segments.append((marker, i, end))
        i = end
    return segments


def progressive_jpeg_bomb(side: int = 1024, scans: int = 5000, max_bytes: int = 256 * 1024) -> bytes:
    """A flat progressive JPEG whose last scan (an AC refinement) is repeated ``scans`` times (as
    many as fit in ``max_bytes``): each repeat is a pass over every block (5000 scans of a
    megapixel: ~6 s to decode here; 17 500 fit in 256 KiB)."""
    data = encode(Image.new("L", (side, side), 128), "JPEG", progressive=True, quality=90)
    _, start, end = [s for s in _jpeg_segments(data) if s[0] == 0xDA][-1]
    scan = data[start:end]
    return data[:end] + scan * min(scans, (max_bytes - end - 2) // len(scan)) + b"\xff\xd9"


def jpeg_marker_flood(size: int = 256 * 1024) -> bytes:
    """A small valid JPEG with ``size`` bytes of empty comment segments before its frame."""
    good = encode(Image.new("L", (28, 28), 0), "JPEG")
    return good[:2] + b"\xff\xfe\x00\x02" * (size // 4) + good[2:]


def tiff_bomb(width: int = 6000, height: int = 6000) -> bytes:
    """A deflate-compressed all-zero greyscale TIFF (~40 KiB for 36 megapixels)."""
    return encode(Image.new("L", (width, height), 0), "TIFF", compression="tiff_deflate")


def constant_float_tiff(value: float = 7.5, side: int = 64) -> bytes:
    """A valid 32-bit float TIFF whose pixels all hold ``value`` (a division by zero, once)."""
    return encode(Image.fromarray(np.full((side, side), value, np.float32)), "TIFF")


def truncated(data: bytes, keep: float = 0.5) -> bytes:
    """The first ``keep`` of ``data``."""
    return data[: max(1, int(len(data) * keep))]


def encode(img: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **options)
    return buffer.getvalue()


def good_digit(side: int = 280, fmt: str = "PNG") -> bytes:
    """A plain good upload: a dark '1' on light paper, ``side`` pixels wide."""
    canvas = np.full((side * 3 // 4, side), 235, np.uint8)
    canvas[side // 8: side * 5 // 8, side // 2 - side // 30: side // 2 + side // 30] = 20
    return encode(Image.fromarray(canvas), fmt)


# ----------------------------------------------------------------------------------- HTTP bodies


def multipart(fields: list[tuple[str, str, bytes]], boundary: str = "hostileboundary") -> tuple[bytes, str]:
    """(body, content type) of a multipart/form-data body of (name, filename, data) parts."""
    parts = []
    for name, filename, data in fields:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        parts.append(f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


# ----------------------------------------------------------------------------------- raw HTTP


@dataclass
class Result:
    """What one attack got: the status (0: no answer) and the seconds from its first byte sent."""

    status: int
    seconds: float
    body: bytes = b""
    headers: dict = field(default_factory=dict)


def raw_request(url: str, method: str, path: str, *, body: bytes = b"", headers: dict | None = None,
                pieces: list[tuple[bytes, float]] | None = None, raw: bytes | None = None,
                timeout: float = 30.0) -> Result:
    """Send one HTTP/1.1 request over a fresh socket and read the answer.

    ``pieces``: the bytes to send after the head instead of ``body``, each (bytes, seconds to wait
    before it): a slow or stalling client. ``raw``: the exact bytes to send instead of a request.
    Headers are sent as given (a Content-Length may lie).
    """
    target = urlsplit(url)
    start = time.monotonic()
    with socket.create_connection((target.hostname, target.port), timeout=timeout) as sock:
        if raw is not None:
            data = raw
        else:
            head = {"Host": target.netloc, "Connection": "close", **(headers or {})}
            if pieces is None and "Content-Length" not in head and "Transfer-Encoding" not in head:
                head["Content-Length"] = str(len(body))
            data = f"{method} {path} HTTP/1.1\r\n".encode() + b"".join(
                f"{k}: {v}\r\n".encode() for k, v in head.items()) + b"\r\n" + (body if pieces is None else b"")
        try:
            sock.sendall(data)
            for piece, delay in pieces or []:
                time.sleep(delay)
                sock.sendall(piece)
        except OSError:
            pass  # the server answered and closed while we were still sending: read its answer
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
                if _complete(answer):
                    break
        except OSError:
            pass
    return _parse(answer, time.monotonic() - start)


def _complete(answer: bytes) -> bool:
    head, sep, body = answer.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value.strip() or 0)
    return False


def _parse(answer: bytes, seconds: float) -> Result:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        return Result(0, seconds, answer)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().decode(errors="replace").lower()] = value.strip().decode(errors="replace")
    return Result(status, seconds, body, headers)


def hold_slowloris(url: str, connections: int, seconds: float) -> int:
    """Open ``connections`` sockets that trickle header lines (one every 0.5 s) for ``seconds``;
    returns how many were still open at the end (uvicorn bounds neither their number nor time)."""
    target = urlsplit(url)
    sockets = []
    for _ in range(connections):
        try:
            sock = socket.create_connection((target.hostname, target.port), timeout=5)
            sock.sendall(f"GET /livez HTTP/1.1\r\nHost: {target.netloc}\r\n".encode())
            sockets.append(sock)
        except OSError:
            break
    deadline = time.monotonic() + seconds
    i = 0
    while time.monotonic() < deadline:
        time.sleep(0.5)
        i += 1
        for sock in list(sockets):
            try:
                sock.sendall(f"X-Slow-{i}: {'a' * 8}\r\n".encode())
            except OSError:
                sockets.remove(sock)
    for sock in sockets:
        sock.close()
    return len(sockets)


# ----------------------------------------------------------------------------------- the corpus


@dataclass(frozen=True)
class Attack:
    """One hostile request and the answers the service may give it."""

    name: str
    #: "file" (a bomb or a broken upload), "costly" (legitimate but costly: answered 200 within
    #: the limits), "http" (the request itself), "json" (the vector APIs)
    kind: str
    expect: frozenset[int]
    send: Callable[[str], Result]
    note: str = ""


def corpus(max_body_bytes: int = 10 * 1024 * 1024, max_image_pixels: int = 40_000_000,
           timeout: float = 30.0) -> list[Attack]:
    """The attacks, each with the statuses it may get (a client's mistake is never answered 5xx),
    for a service with these limits; ``timeout``: how long a request waits for its answer."""

    def request(method: str, path: str, **kwargs):
        return lambda url: raw_request(url, method, path, timeout=timeout, **kwargs)

    def _upload(path: str, data: bytes, filename: str = "upload", field_name: str = "image", copies: int = 1):
        body, content_type = multipart([(field_name, f"{filename}{i}", data) for i in range(copies)])
        return request("POST", path, body=body, headers={"Content-Type": content_type})

    def _json(path: str, body: bytes, content_type: str = "application/json"):
        return request("POST", path, body=body, headers={"Content-Type": content_type})

    def _random_path(url: str) -> Result:
        path = "/" + "".join(random.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(24))
        return raw_request(url, "GET", path, timeout=timeout)

    def within(work: int) -> frozenset[int]:  # a legitimate decode of this work: 200, or 413 under a lower limit
        return frozenset({200}) if work <= max_image_pixels else frozenset({413})

    good = good_digit()
    nested = b'{"pixels": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    huge_number = b'{"pixels": [[' + b",".join([b"1" * 310] * 784) + b"]]}"
    too_many_digits = b'{"pixels": [[' + b"9" * 5000 + b"]]}"
    many_rows = b'{"pixels": [' + b",".join([b"[" + b",".join([b"0.5"] * 784) + b"]"] * 3000) + b"]}"
    too_big = 413
    files = [
        Attack("RLE BMP, 25 KiB declaring 40 MP", "file", frozenset({too_big}),
               _upload("/mnist/predict", rle_bmp_bomb(), "bomb.bmp")),
        Attack("GIF, 1x1 frame on a 6000x6000 screen", "costly", within(36_000_000),
               _upload("/mnist/predict", gif_screen_bomb(), "screen.gif"),
               "priced by its screen (36 MP of grey: within the limit, cheap once reduced)"),
        Attack("GIF, 1x1 frame on a 65535x65535 screen", "file", frozenset({too_big}),
               _upload("/mnist/predict", gif_screen_bomb(65535, 65535), "screen.gif")),
        Attack("progressive JPEG, 5000 scans in 63 KiB", "file", frozenset({too_big}),
               _upload("/mnist/predict", progressive_jpeg_bomb(), "scans.jpg")),
        Attack("predict_batch of 16 screen GIFs", "file", frozenset({too_big}),
               _upload("/mnist/predict_batch", gif_screen_bomb(), "screen.gif", "images", 16),
               "the request's images together are over 4x the decode limit"),
        Attack("PNG bomb, 36 MP RGBA of zeros", "file", frozenset({too_big}),
               _upload("/mnist/predict", png_bomb(6000, 6000, 6), "bomb.png")),
        Attack("PNG bomb, 36 MP grey of zeros", "costly", within(36_000_000),
               _upload("/mnist/predict", png_bomb(6000, 6000, 0), "bomb.png"),
               "within the limit: decoded (in a decoder process) and reduced"),
        Attack("PNG header declaring 100000x100000", "file", frozenset({too_big}),
               _upload("/mnist/predict", png_header_only(100_000, 100_000), "huge.png")),
        Attack("TIFF bomb, 36 MP deflate", "costly", within(36_000_000),
               _upload("/asl/predict", tiff_bomb(), "bomb.tif")),
        Attack("PNG with 21 000 empty chunks", "costly", frozenset({200}),
               _upload("/mnist/predict", png_chunk_flood(), "chunks.png")),
        Attack("PNG with its pixels in 30 000 IDAT chunks (decoder thread)", "costly", frozenset({200}),
               _upload("/mnist/predict", png_idat_flood(), "idat.png")),
        Attack("JPEG with 65 000 comment segments", "costly", frozenset({200}),
               _upload("/mnist/predict", jpeg_marker_flood(), "comments.jpg")),
        Attack("GIF with 131 000 comment sub-blocks", "costly", frozenset({200}),
               _upload("/mnist/predict", gif_comment_flood(), "comments.gif")),
        Attack("truncated PNG", "file", frozenset({400}), _upload("/mnist/predict", truncated(good), "cut.png")),
        Attack("truncated JPEG", "file", frozenset({400}),
               _upload("/mnist/predict", truncated(good_digit(fmt="JPEG"), 0.3), "cut.jpg")),
        Attack("random bytes", "file", frozenset({400}),
               _upload("/mnist/predict", bytes(random.Random(0).randbytes(4096)), "noise.png")),
        Attack("constant float TIFF", "costly", frozenset({200}),
               _upload("/mnist/predict", constant_float_tiff(), "flat.tif")),
    ]
    http = [
        Attack("body over the limit, declared", "http", frozenset({413}),
               request("POST", "/mnist/predict", headers={
                   "Content-Type": "multipart/form-data; boundary=x", "Content-Length": str(max_body_bytes + 1)},
                   pieces=[])),
        Attack("body over the limit, chunked", "http", frozenset({413}),
               request("POST", "/mnist/predict", headers={
                   "Content-Type": "multipart/form-data; boundary=x", "Transfer-Encoding": "chunked"},
                   pieces=[(b"100000\r\n" + b"x" * 0x100000 + b"\r\n", 0)] * (max_body_bytes // 0x100000 + 2)
                   + [(b"0\r\n\r\n", 0)])),
        Attack("lying Content-Length (sends 1 KiB of 100 KiB)", "http", frozenset({408}),
               request("POST", "/mnist/predict", headers={
                   "Content-Type": "multipart/form-data; boundary=x", "Content-Length": "102400"},
                   pieces=[(b"x" * 1024, 0)])),
        Attack("slow body (1 byte every 0.3 s)", "http", frozenset({408}),
               request("POST", "/mnist/predict", headers={
                   "Content-Type": "multipart/form-data; boundary=x", "Content-Length": "1000"},
                   pieces=[(b"x", 0.3)] * 20)),
        Attack("headers of 100 KiB, sent at once", "http", frozenset({431}),
               request("GET", "/livez", headers={f"X-Big-{i}": "a" * 1000 for i in range(100)})),
        Attack("path of 64 KiB", "http", frozenset({414}), request("GET", "/" + "a" * 65536)),
        Attack("header of 1 MiB", "http", frozenset({400, 431}),
               request("GET", "/livez", headers={"X-Big": "a" * 1_048_576}),
               "uvicorn's own 400 (plain text: before any app runs)"),
        Attack("not HTTP at all", "http", frozenset({400}),
               request("", "", raw=b"\x16\x03\x01\x02\x00 hello\r\n\r\n"),
               "uvicorn's own 400"),
        Attack("random path", "http", frozenset({404}), _random_path),
        Attack("wrong method on an upload route", "http", frozenset({405}),
               request("DELETE", "/mnist/predict")),
        Attack("wrong method on a vector route", "http", frozenset({405}),
               request("GET", "/asl_probabilities")),
        Attack("unknown method", "http", frozenset({405, 404, 400}),
               request("BREW", "/mnist/predict")),
        Attack("multipart without a boundary", "http", frozenset({400}),
               request("POST", "/mnist/predict", body=b"--x\r\n\r\n",
                                       headers={"Content-Type": "multipart/form-data"})),
        Attack("multipart cut short", "http", frozenset({400}),
               request("POST", "/mnist/predict", body=multipart([("image", "a.png", good)])[0][:200],
                                       headers={"Content-Type": multipart([])[1]})),
        Attack("multipart of 5000 fields", "http", frozenset({400}),
               _upload("/mnist/predict_batch", b"x", "f", "noise", 5000)),
        Attack("JSON to an upload route", "http", frozenset({400}),
               request("POST", "/mnist/predict", body=b'{"image": "x"}', headers={"Content-Type": "application/json"})),
        Attack("form-urlencoded to an upload route", "http", frozenset({400}),
               request("POST", "/mnist/predict", body=b"image=x&top_k=3",
                       headers={"Content-Type": "application/x-www-form-urlencoded"})),
        Attack("top_k of 400 digits", "http", frozenset({400}),
               request("POST", "/mnist/predict", body=multipart([("image", "a.png", good), ("top_k", "", b"9" * 400)])[0],
                       headers={"Content-Type": multipart([])[1]})),
        Attack("65 files in a batch", "http", frozenset({400}),
               _upload("/mnist/predict_batch", good, "d.png", "images", 65)),
    ]
    vectors = [
        Attack("JSON: pixels an object", "json", frozenset({400}), _json("/mnist_probabilities", b'{"pixels": {"a": 1}}')),
        Attack("JSON: a row with an object", "json", frozenset({400}),
               _json("/mnist_probabilities", b'{"pixels": [[1, {}]]}')),
        Attack("JSON: 310-digit numbers", "json", frozenset({400}), _json("/mnist_probabilities", huge_number)),
        Attack("JSON: a 5000-digit number", "json", frozenset({400}), _json("/asl_probabilities", too_many_digits)),
        Attack("JSON: NaN", "json", frozenset({400}),
               _json("/mnist_probabilities", b'{"pixels": [[' + b",".join([b"NaN"] * 784) + b"]]}")),
        Attack("JSON: nested 100 000 deep", "json", frozenset({400}), _json("/mnist_probabilities", nested)),
        Attack("JSON: malformed", "json", frozenset({400}), _json("/mnist_probabilities", b'{"pixels": [[0.5,')),
        Attack("JSON: not UTF-8", "json", frozenset({400}), _json("/mnist_probabilities", b'{"pixels": "\xff\xfe"}')),
        Attack("JSON: 30 MiB", "json", frozenset({413}),
               _json("/mnist_probabilities", b'{"pixels": [[' + b"0," * (15 * 1024 * 1024) + b"0]]}")),
        Attack("JSON: 3000 rows (9 MiB)", "json", frozenset({413}),
               _json("/asl_probabilities", many_rows), "over the vector routes' body limit (MAX_BATCH_SIZE rows)"),
        Attack("JSON: 200 rows", "json", frozenset({400}),
               _json("/asl_probabilities", b'{"pixels": [' + b",".join([b"[" + b",".join([b"0"] * 784) + b"]"] * 200)
                     + b"]}"), "more rows than MAX_BATCH_SIZE"),
        Attack("vector route, multipart without a boundary", "json", frozenset({415}),
               _json("/mnist_probabilities", b"--x\r\n", "multipart/form-data")),
    ]
    return files + http + vectors
