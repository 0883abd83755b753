"""Hostile clients: costly files priced from their headers, decoding that cannot stall a worker,
every route guarded, nothing loaded from third parties.

Units first (decode pricing, the decoder processes, the Guard middleware on a small app), then the
whole hostile corpus (tools/hostile.py) against the session's `bentoml serve` (tests/conftest.py:
3 MiB bodies, 4-megapixel decodes). Speed goals (answers within 2 s, good requests within 1 s
meanwhile) are `make bench-hostile`'s; here only bounds that tell a guard from no guard (408 in a
few seconds, not 504 after 30).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import signal
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import requests
from PIL import Image, ImageFile
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from preprocessing import ImageError, ImageTooLarge, decode_image, inspect_image, prepare_upload
from preprocessing import decode as decode_module
from service import decoding
from service.decoding import BatchTooCostly, DecodeFailed, DecodeLimits, UploadDecoder
from service.guards import Drain, Guard
from service.settings import Settings
from tools.hostile import (
    constant_float_tiff,
    corpus,
    encode,
    gif_screen_bomb,
    good_digit,
    png_bomb,
    png_chunk_flood,
    png_header_only,
    progressive_jpeg_bomb,
    raw_request,
    rle_bmp_bomb,
)

MiB = 1024 * 1024


@pytest.fixture
def no_decoding(monkeypatch):
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("pixel data was decoded"))


# ---------------------------------------------------------------- decode work, from the header


@pytest.mark.parametrize("data, words", [
    (rle_bmp_bomb(), "RLE-compressed BMP"),
    (progressive_jpeg_bomb(), "progressive JPEG"),
    (png_bomb(6000, 6000, 6), "RGBA (4 bytes a pixel)"),
    (png_header_only(100_000, 100_000), "10,000 megapixels"),
    (gif_screen_bomb(65535, 65535), "4,295 megapixels"),
], ids=["rle-bmp", "progressive-jpeg", "rgba-png", "png-header", "gif-screen"])
def test_costly_files_are_refused_from_their_headers(data, words, no_decoding):
    assert len(data) < 300 * 1024
    with pytest.raises(ImageTooLarge, match=re.escape(words)):
        decode_image(data)


def test_decode_work_follows_declared_pixels_not_bytes():
    assert inspect_image(gif_screen_bomb(6000, 6000)).work == 36_000_000  # the logical screen, 35 bytes
    assert inspect_image(png_bomb(1000, 1000, 2)).work == 3_000_000  # RGB: 3 bytes a pixel
    assert inspect_image(rle_bmp_bomb(100, 100)).work == 40 * 10_000  # RLE: decoded in Python
    photo = encode(Image.new("RGB", (8000, 6000), (90, 120, 150)), "JPEG", quality=80)
    assert inspect_image(photo).work == 1000 * 750  # decoded at 1/8 a side, as grey
    progressive = encode(Image.new("RGB", (1000, 1000)), "JPEG", progressive=True)
    assert inspect_image(progressive).work == 1_000_000  # a normal scan count costs its pixels
    many = progressive_jpeg_bomb(side=100, scans=400)
    assert inspect_image(many).work == 100 * 100 * many.count(b"\xff\xda") // 10


def test_a_header_read_already_is_not_priced_again_unless_it_is_another_image(monkeypatch):
    small, bomb = good_digit(200), rle_bmp_bomb()
    declared = inspect_image(small)
    priced = []
    price = decode_module._price
    monkeypatch.setattr(decode_module, "_price", lambda *a, **k: priced.append(1) or price(*a, **k))
    assert decode_image(small, declared=declared).size == (200, 150) and not priced
    with pytest.raises(ImageTooLarge, match="RLE-compressed BMP"):  # another image's header: priced anew
        decode_image(bomb, declared=declared)


def test_phone_photos_up_to_the_jpeg_limit_are_decoded_reduced():
    photo = encode(Image.new("L", (8160, 6120), 200), "JPEG", quality=80)  # a 50 MP phone photo
    assert decode_image(photo).size == (1020, 765)  # DCT-scaled 1/8: never decoded at full size
    with pytest.raises(ImageTooLarge, match="the limit for JPEG photos is 1 megapixels"):
        decode_image(encode(Image.new("L", (1200, 1000)), "JPEG"), max_jpeg_pixels=1_000_000)


def test_large_images_are_reduced_before_any_float_copy():
    img = Image.new("RGBA", (4000, 100), (0, 0, 0, 0))
    img.paste((20, 20, 20, 255), (1000, 20, 3000, 80))  # dark ink on a transparent canvas
    out = decode_image(encode(img, "PNG"))
    assert out.size == (1000, 25) and out.mode == "L"
    a = np.asarray(out)
    assert a[12, 500] < 60 and a[2, 100] > 200  # flattened onto white, as at full size


@pytest.mark.parametrize("value, expected", [(7.5, 8), (-3.0, 0), (0.5, 128), (1000.0, 4)])
def test_constant_float_tiff_is_an_image(value, expected):
    """A constant image used to divide by zero in the depth conversion (a 400)."""
    a = np.asarray(decode_image(constant_float_tiff(value)))
    assert (a == expected).all()


# ---------------------------------------------------------------- decoder processes


def _limits(**changes) -> DecodeLimits:
    values = dict(max_pixels=40_000_000, max_jpeg_pixels=120_000_000, processes=1, queue=4, timeout_s=10.0,
                  inline_bytes=64 * 1024, inline_work=250_000)
    return DecodeLimits(**{**values, **changes})


def test_decode_limits_come_from_the_settings():
    settings = Settings.from_env({"MAX_IMAGE_PIXELS": "1000000", "BATCH_DECODE_FACTOR": "2",
                                  "LIGHT_DECODE_PIXELS": "300000", "THREAD_DECODE_BYTES": "100000"})
    limits = DecodeLimits.from_settings(settings)
    assert (limits.batch_factor, limits.light_work, limits.thread_bytes) == (2, 300_000, 100_000)
    assert UploadDecoder(limits).batch_limit == 2_000_000
    default = DecodeLimits.from_settings(Settings())
    assert (default.batch_factor, default.light_work, default.thread_bytes) == (4, 4_000_000, 512 * 1024)
    assert _limits() == dataclasses.replace(_limits(), batch_factor=4, light_work=4_000_000, thread_bytes=512 * 1024)


def test_decoder_answers_as_prepare_upload_inline_or_in_a_process():
    small, large = good_digit(200), good_digit(1200, "JPEG")

    async def scenario():
        decoder = UploadDecoder(_limits())
        try:
            inline, work = await decoder.prepare(small, "mnist_digit")
            assert decoder._idle is None and work == 200 * 150  # no decoder process needed
            far, work_far = await decoder.prepare(large, "mnist_digit")
            assert decoder._idle is not None and work_far == 600 * 450  # JPEG at 1/2 a side, in a process
            return inline, far
        finally:
            await decoder.aclose()

    inline, far = asyncio.run(scenario())
    np.testing.assert_array_equal(inline.vector, prepare_upload(small, "mnist_digit").vector)
    np.testing.assert_array_equal(far.vector, prepare_upload(large, "mnist_digit").vector)


def test_light_png_and_jpeg_go_to_a_thread_everything_else_to_a_process():
    """With decoder threads, a light PNG or JPEG too large for the event loop is decoded in a thread
    (no process started); a light BMP, and a heavy PNG, still go to a process."""
    rng = np.random.default_rng(0)
    noisy = lambda fmt: encode(Image.fromarray(rng.integers(0, 256, (300, 400), dtype=np.uint8)), fmt)  # noqa: E731
    light_png, light_jpeg, light_bmp = noisy("PNG"), noisy("JPEG"), noisy("BMP")
    assert min(len(light_png), len(light_jpeg), len(light_bmp)) > 64 * 1024  # past the inline limit
    heavy_png = png_bomb(2500, 2000, 0)  # 5 MP of grey: over LIGHT_DECODE_PIXELS

    async def scenario():
        decoder = UploadDecoder(_limits(threads=1))
        try:
            in_threads = [(await decoder.prepare(data, "mnist_digit"))[0] for data in (light_png, light_jpeg)]
            assert decoder._idle is None  # no decoder process was needed
            bmp, _ = await decoder.prepare(light_bmp, "mnist_digit")
            assert len(decoder._children) == 1
            heavy, work = await decoder.prepare(heavy_png, "mnist_digit")
            return in_threads, bmp, (heavy, work)
        finally:
            await decoder.aclose()

    (png, jpeg), bmp, (heavy, work) = asyncio.run(scenario())
    for data, prepared in ((light_png, png), (light_jpeg, jpeg), (light_bmp, bmp), (heavy_png, heavy)):
        np.testing.assert_array_equal(prepared.vector, prepare_upload(data, "mnist_digit").vector)
    assert work == 5_000_000


def test_decoder_sheds_when_full_and_kills_decodes_that_run_too_long():
    slow = png_bomb(5000, 5000, 0)  # 25 MP of grey: well over 20 ms to decode

    async def scenario():
        decoder = UploadDecoder(_limits(queue=0, timeout_s=0.02))
        await decoder.start()
        try:
            first, second = await asyncio.gather(decoder.prepare(slow, "mnist_digit"),
                                                 decoder.prepare(slow, "mnist_digit"), return_exceptions=True)
            decoder.limits = _limits(queue=0, timeout_s=10.0)
            await asyncio.sleep(0.5)
            after, _ = await decoder.prepare(good_digit(1200, "JPEG"), "mnist_digit")  # a fresh process
            return first, second, after
        finally:
            await decoder.aclose()

    first, second, after = asyncio.run(scenario())
    outcomes = sorted([type(first).__name__, type(second).__name__])
    assert outcomes == ["DecodeBusy", "ImageTooLarge"], (first, second)
    too_long = first if isinstance(first, ImageTooLarge) else second
    assert too_long.status_code == 413 and "took longer than 0.02 s" in str(too_long)
    assert after.vector.shape == (784,)


def test_a_decoder_process_that_dies_is_replaced():
    slow = png_bomb(6000, 6000, 0)

    async def scenario():
        decoder = UploadDecoder(_limits())
        await decoder.start()
        try:
            (child,) = decoder._children
            task = asyncio.ensure_future(decoder.prepare(slow, "mnist_digit"))
            await asyncio.sleep(0.05)
            os.kill(child.process.pid, signal.SIGKILL)  # as the kernel's OOM killer would
            with pytest.raises(DecodeFailed) as info:
                await task
            assert info.value.status_code == 400
            again, _ = await decoder.prepare(good_digit(1200, "JPEG"), "mnist_digit")
            return again
        finally:
            await decoder.aclose()

    assert asyncio.run(scenario()).vector.shape == (784,)


def test_bad_uploads_get_the_same_errors_in_a_process():
    async def scenario():
        decoder = UploadDecoder(_limits(inline_bytes=0))  # everything in a process
        try:
            for data, error in ((b"not an image" * 10_000, ImageError), (rle_bmp_bomb(), ImageTooLarge)):
                with pytest.raises(error):
                    await decoder.prepare(data, "mnist_digit")
        finally:
            await decoder.aclose()

    asyncio.run(scenario())


class _ChildHere:
    """A decoder process that answers in this process, through the same JSON request and answer,
    so that a spy sees what it reads."""

    answered = 0

    def __init__(self):
        self.process = SimpleNamespace(wait=lambda: asyncio.sleep(0))

    @classmethod
    async def start(cls, limits):
        return cls()

    async def call(self, request, data, timeout):
        _ChildHere.answered += 1
        return decoding._decode_answer(decoding._answer(json.loads(json.dumps(request)), data))

    def kill(self):
        pass


def test_an_upload_header_is_read_once_on_every_path(monkeypatch):
    """Inline, in a thread, in a process, priced with its batch, offline: one header read and
    priced per upload (``_price``). A header past the first ``inline_bytes`` is tried there once
    (a bounded parse) and read whole by the decoder process."""
    reads, inspects, decodes = [], [], []  # headers priced, header reads tried, threads that decoded
    price, inspect, prepare = decode_module._price, decoding.inspect_image, decoding.prepare_upload
    monkeypatch.setattr(decode_module, "_price", lambda *a, **k: reads.append(1) or price(*a, **k))
    monkeypatch.setattr(decoding, "inspect_image", lambda *a, **k: inspects.append(1) or inspect(*a, **k))
    monkeypatch.setattr(decoding, "prepare_upload",
                        lambda *a, **k: decodes.append(threading.current_thread().name) or prepare(*a, **k))
    monkeypatch.setattr(decoding, "_Child", _ChildHere)
    rng = np.random.default_rng(0)
    noisy = lambda fmt: encode(Image.fromarray(rng.integers(0, 256, (300, 400), dtype=np.uint8)), fmt)  # noqa: E731
    main = threading.current_thread().name
    # name: (upload, decoded in a thread, in a process, header reads tried)
    uploads = {"inline": (good_digit(200), False, False, 1), "thread": (noisy("PNG"), True, False, 1),
               "process": (noisy("BMP"), False, True, 1),
               "header past the inline bytes": (png_chunk_flood(80 * 1024), False, True, 2)}

    async def one_by_one(decoder):
        for name, (data, in_thread, in_process, tried) in uploads.items():
            reads.clear()
            inspects.clear()
            decodes.clear()
            answered = _ChildHere.answered
            prepared, _ = await decoder.prepare(data, "mnist_digit")
            assert len(reads) == 1 and len(inspects) == tried, name
            assert (decodes[0] != main) == in_thread and _ChildHere.answered - answered == in_process, name
            np.testing.assert_array_equal(prepared.vector, prepare_upload(data, "mnist_digit").vector)

    async def as_a_batch(decoder):
        reads.clear()
        inspects.clear()
        batch = [data for data, *_ in uploads.values()]
        headers = decoder.price_batch(batch)
        assert headers[-1] is None and len(inspects) == len(batch)  # the last header is past the inline bytes
        for data, declared in zip(batch, headers):
            await decoder.prepare(data, "mnist_digit", declared=declared)
        assert len(reads) == len(batch) and len(inspects) == len(batch) + 1  # + the decoder process's

    async def scenario():
        decoder = UploadDecoder(_limits(threads=1))
        try:
            await one_by_one(decoder)
            await as_a_batch(decoder)
        finally:
            await decoder.aclose()

    asyncio.run(scenario())
    reads.clear()
    prepare_upload(good_digit(200), "mnist_digit")  # offline: the decode reads the header itself
    assert len(reads) == 1

def test_the_decoder_routes_and_prices_by_its_configured_limits(monkeypatch):
    monkeypatch.setattr(decoding, "_Child", _ChildHere)
    pixels = np.random.default_rng(0).integers(0, 256, (300, 400), dtype=np.uint8)
    light_png = encode(Image.fromarray(pixels), "PNG")  # 120 000 pixels of work, over 64 KiB

    async def in_a_process(limits) -> bool:
        decoder = UploadDecoder(limits)
        try:
            answered = _ChildHere.answered
            await decoder.prepare(light_png, "mnist_digit")
            return _ChildHere.answered > answered
        finally:
            await decoder.aclose()

    assert not asyncio.run(in_a_process(_limits(threads=1)))
    assert asyncio.run(in_a_process(_limits(threads=1, thread_bytes=64 * 1024)))
    assert asyncio.run(in_a_process(_limits(threads=1, light_work=100_000)))
    with pytest.raises(BatchTooCostly) as info:
        UploadDecoder(_limits(max_pixels=200_000, batch_factor=1)).price_batch([light_png, light_png])
    assert info.value.index == 1 and "past 0.2 megapixels of decoding in all" in str(info.value)


# ---------------------------------------------------------------- the Guard middleware


async def _echo(request):
    body = await request.body()
    return JSONResponse({"received": len(body)})


async def _boom(request):
    raise RuntimeError("a bug")


def _guarded(**options) -> Guard:
    app = Starlette(routes=[Route("/echo", _echo, methods=["POST"]), Route("/boom", _boom),
                            Route("/pixels", _echo, methods=["POST"])])
    settings = dict(max_body_bytes=1000, body_timeout_s=0.3,
                    json_checks={"/pixels": lambda body: None if body == {"ok": True} else "not ok"})
    return Guard(app, **{**settings, **options})


def _call(app, method="POST", path="/echo", headers=(), chunks=((b"", 0.0),), stall=False):
    """Drive an ASGI app with a client that sends ``chunks`` (bytes, seconds before) and then
    stalls if ``stall``; returns (status, headers, body, seconds)."""

    async def run():
        pending = list(chunks)

        async def receive():
            if pending:
                body, delay = pending.pop(0)
                await asyncio.sleep(delay)
                return {"type": "http.request", "body": body, "more_body": bool(pending) or stall}
            await asyncio.sleep(3600)

        sent = []

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "method": method, "path": path, "raw_path": path.encode(), "query_string": b"",
                 "headers": [(k.lower().encode(), v.encode()) for k, v in headers], "scheme": "http",
                 "server": ("test", 80), "client": ("test", 1), "root_path": "", "http_version": "1.1"}
        start = time.monotonic()
        await app(scope, receive, send)
        seconds = time.monotonic() - start
        head = next(m for m in sent if m["type"] == "http.response.start")
        body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        return head["status"], {k.decode(): v.decode() for k, v in head["headers"]}, body, seconds

    return asyncio.run(run())


def test_guard_limits_the_body_declared_or_streamed():
    guard = _guarded()
    assert _call(guard, headers=[("content-length", "10")], chunks=[(b"x" * 10, 0)])[2] == b'{"received":10}'
    status, headers, body, _ = _call(guard, headers=[("content-length", "1001")], stall=True)
    assert status == 413 and json.loads(body) == {"error": "the request body is larger than the limit of 0.000954 MiB"}
    assert headers["connection"] == "close"
    chunked = [("transfer-encoding", "chunked")]
    assert _call(guard, headers=chunked, chunks=[(b"x" * 600, 0), (b"x" * 600, 0)])[0] == 413


def test_guard_bounds_the_request_head():
    guard = _guarded()
    assert _call(guard, method="GET", path="/nowhere", headers=[("x-a", "a" * 8000)])[0] == 404
    status, _, body, _ = _call(guard, method="GET", path="/nowhere", headers=[("x-a", "a" * 20_000)])
    assert status == 431 and json.loads(body)["error"] == "the request's headers are larger than 16 KiB in all"
    status, _, body, _ = _call(guard, method="GET", path="/" + "a" * 9000)
    assert status == 414 and json.loads(body)["error"] == "the request's path and query are longer than 8192 bytes"


def test_guard_limits_are_the_configured_ones():
    guard = _guarded(max_header_bytes=2048, max_target_bytes=100, min_body_bytes_per_s=1000)
    status, _, body, _ = _call(guard, method="GET", path="/nowhere", headers=[("x-a", "a" * 3000)])
    assert status == 431 and json.loads(body)["error"] == "the request's headers are larger than 2 KiB in all"
    status, _, body, _ = _call(guard, method="GET", path="/" + "a" * 200)
    assert status == 414 and json.loads(body)["error"] == "the request's path and query are longer than 100 bytes"
    status, _, body, seconds = _call(guard, headers=[("content-length", "20")], chunks=[(b"x", 0.1)] * 20)
    assert status == 408 and json.loads(body)["error"].endswith("at least 1000 bytes/s") and seconds < 1
    settings = Settings(max_header_bytes=3000, max_target_bytes=200, min_body_bytes_per_s=2000)
    configured = Guard(None, max_body_bytes=1, body_timeout_s=1.0, **{
        name: getattr(settings, name) for name in ("max_header_bytes", "max_target_bytes", "min_body_bytes_per_s")})
    assert (configured.max_header_bytes, configured.max_target_bytes, configured.min_body_bytes_per_s) == (
        3000, 200, 2000)


def test_guard_answers_stalled_and_slow_bodies_408_quickly():
    guard = _guarded()
    # a Content-Length larger than the body sent: the rest never comes
    status, _, body, seconds = _call(guard, headers=[("content-length", "900")], chunks=[(b"x" * 100, 0)], stall=True)
    assert status == 408 and "100 of 900 declared bytes" in json.loads(body)["error"]
    assert 0.25 < seconds < 2
    # a trickle: every gap under the timeout, but far under 16 KiB/s
    trickle = [(b"x", 0.1)] * 20
    status, _, body, seconds = _call(guard, headers=[("content-length", "20")], chunks=trickle)
    assert status == 408 and seconds < 1 and json.loads(body)["error"].endswith("at least 16 KiB/s")


def test_guard_checks_json_bodies_before_the_route():
    guard = _guarded(max_body_bytes=200_000)
    ok = _call(guard, path="/pixels", headers=[("content-type", "application/json"), ("content-length", "10")],
               chunks=[(b'{"ok":true}', 0)])
    assert ok[0] == 200
    for body, content_type, status, words in [
        (b'{"ok": false}', "application/json", 400, "not ok"),
        (b'{"ok": tru', "application/json", 400, "not valid JSON"),
        (b"[" * 100_000, "application/json", 400, "nested too deeply"),
        (b"9" * 5000, "application/json", 400, "not valid JSON"),
        (b"--x", "multipart/form-data", 415, "application/json"),
    ]:
        got = _call(guard, path="/pixels", headers=[("content-type", content_type), ("content-length", "1")],
                    chunks=[(body, 0)])
        assert got[0] == status and words in json.loads(got[2])["error"], (body[:20], got)
    assert _call(_guarded(max_json_bytes=5), path="/pixels", headers=[("content-length", "11")], stall=True)[0] == 413


def test_guard_answers_every_error_as_json():
    guard = _guarded()
    status, headers, body, _ = _call(guard, method="GET", path="/nowhere")
    assert status == 404 and headers["content-type"] == "application/json"
    assert json.loads(body) == {"error": "no such path: GET /nowhere (the API is described at /docs)"}
    status, headers, body, _ = _call(guard, method="GET", path="/echo")
    assert status == 405 and headers["allow"] == "POST"
    assert json.loads(body) == {"error": "method GET is not allowed on /echo; allowed: POST"}
    status, headers, body, _ = _call(guard, method="GET", path="/boom")
    assert status == 500 and json.loads(body) == {"error": "internal error; the server log has the details"}


def test_guard_closes_connections_while_draining():
    drain = Drain(5)
    guard = _guarded(drain=drain)
    assert "connection" not in _call(guard, method="GET", path="/nowhere")[1]
    drain.since = time.monotonic()
    assert _call(guard, method="GET", path="/nowhere")[1]["connection"] == "close"


# ---------------------------------------------------------------- against the running service


def test_every_attack_gets_its_answer_and_the_service_survives(server):
    url = server.url
    for attack in corpus(max_body_bytes=3 * MiB, max_image_pixels=4_000_000, timeout=20):
        result = attack.send(url)
        assert result.status in attack.expect, (attack.name, result.status, result.body[:300])
        if result.status >= 400 and "uvicorn" not in attack.note:  # uvicorn's own answers are plain text
            assert "error" in json.loads(result.body), (attack.name, result.body[:200])
        assert result.seconds < 10, (attack.name, result.seconds)  # 408s in about a second, not 504 at 30
    assert requests.get(f"{url}/livez", timeout=10).status_code == 200
    good = requests.post(f"{url}/mnist/predict", files={"image": ("d.png", good_digit())}, timeout=30)
    assert good.status_code == 200, good.text


def test_wrong_method_lists_the_allowed_ones(server):
    for method, path in (("GET", "/mnist/predict"), ("PUT", "/asl_probabilities"), ("POST", "/livez")):
        response = requests.request(method, f"{server.url}{path}", timeout=10)
        assert response.status_code == 405 and response.headers["Allow"], (method, path)
        assert response.json()["error"].startswith(f"method {method} is not allowed on {path}; allowed: ")


def test_metrics_use_route_templates_and_stay_flat(server):
    url = server.url
    for _ in range(30):  # every label set these requests make exists from here on
        raw_request(url, "GET", f"/{os.urandom(8).hex()}")
    requests.get(f"{url}/metrics", timeout=10)
    before = requests.get(f"{url}/metrics", timeout=10).text
    for _ in range(200):
        raw_request(url, "GET", f"/{os.urandom(8).hex()}/{os.urandom(8).hex()}")
    after = requests.get(f"{url}/metrics", timeout=10).text
    assert len(after) <= len(before) + 512, (len(before), len(after))
    routes = set(re.findall(r'http_request_duration_seconds_count\{[^}]*route="([^"]*)"', after))
    assert "unmatched" in routes and all(r == "unmatched" or r.startswith("/") for r in routes)
    assert not any(re.fullmatch(r"/[0-9a-f]{16}.*", r) for r in routes), routes
    assert "model_batch_size_count" in after


def test_pages_load_nothing_from_elsewhere_and_say_so(server):
    for path in ("/docs", "/ui/", "/docs/assets/swagger-ui-bundle.js", "/ui/app.js"):
        response = requests.get(f"{server.url}{path}", timeout=10)
        assert response.status_code == 200
        policy = response.headers["Content-Security-Policy"]
        assert "default-src 'self'" in policy and "script-src 'self'" in policy and "connect-src 'self'" in policy
    for path in ("/docs", "/ui/"):
        html = requests.get(f"{server.url}{path}", timeout=10).text
        for url in re.findall(r'(?:src|href)="([^"]+)"', html):
            assert not re.match(r"(https?:)?//", url), (path, url)
    spec = requests.get(f"{server.url}/docs.json", timeout=10).text
    assert not re.search(r"https?://", spec), re.findall(r"https?://[^\s\"')]+", spec)[:5]
    info = json.loads(spec)["info"]
    assert info["title"] == "Digits and signs" and "contact" not in info


def test_api_reference_renders_under_its_policy(server):
    """Swagger UI under the Content-Security-Policy: it renders, reports no violation, and every
    request it makes is to the service itself."""
    if not Path(os.environ.get("CHROMIUM", "/usr/bin/chromium")).is_file():
        pytest.skip("no Chromium (apt-get install chromium; .ci/run does)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is missing")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
                                             args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            messages, urls = [], []
            page.on("console", lambda message: messages.append(f"{message.type}: {message.text}"))
            page.on("request", lambda request: urls.append(request.url))
            page.goto(f"{server.url}/docs")
            page.wait_for_selector(".swagger-ui .opblock-summary", timeout=30_000)
            page.locator(".opblock-summary").first.click()
            page.wait_for_timeout(300)
        finally:
            browser.close()
    assert not [m for m in messages if m.startswith("error") or "Content Security Policy" in m], messages
    assert urls and all(u.startswith((server.url, "data:", "blob:")) for u in urls), urls
