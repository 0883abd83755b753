"""Uploads -> model inputs without ever stalling the event loop: cheap ones inline, costly ones in
decoder processes, bounded in number, queue, time and memory.

A decode costs what the image's header declares, not what the file weighs (``preprocessing.decode``
prices it in *work*). :class:`UploadDecoder` (one per worker) reads an upload's header on the event
loop -- only its first ``INLINE_DECODE_BYTES``, so the parse is bounded -- and when the upload is
small and its work too, decodes and preprocesses it there (a few ms). Every other upload goes to
one of ``DECODE_PROCESSES`` child processes (``python -m service.decoding``):

* light PNG and JPEG uploads (work known from the header and at most ``LIGHT_DECODE_PIXELS``, at
  most ``THREAD_DECODE_BYTES``) are decoded by one of ``DECODE_THREADS`` threads instead: their
  decoders are C code that releases the GIL, and a process round trip cost ~3 ms of CPU and several
  event-loop turns per upload, which under load made these uploads the p99 (and their waits 503s);
* the event loop stays free (Pillow's header parsers and its BMP RLE decoder are Python code that
  holds the GIL; in a thread they cut the loop's throughput ~5x);
* at most ``DECODE_QUEUE`` uploads wait for a process, each at most ``DECODE_TIMEOUT_MS``; beyond
  that the request is shed with 503 (:class:`DecodeBusy`), never queued without bound;
* heavy decodes (over ``LIGHT_DECODE_PIXELS``, or with a header past the first
  ``INLINE_DECODE_BYTES``) may take all processes but one, so a burst of them never stops the
  light ones;
* a decode running past ``DECODE_TIMEOUT_MS`` is killed with its process (413), whatever made it
  slow; a process that dies on an upload is replaced (400);
* a child's address space is capped (``RLIMIT_AS``), so no upload can take the worker's memory.

An upload's header is read once: the decode (inline, in a thread or in a process) is handed the
:class:`~preprocessing.Declared` read on the event loop, and a decoder process reads it itself only
when it was not within the first ``INLINE_DECODE_BYTES``.

The child speaks a small framed protocol on its stdin/stdout (a JSON line, then raw bytes); its
answers are parsed as data, never unpickled.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
import os
import signal
import struct
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from preprocessing import (BatchTooCostly, Declared, ImageError, ImageTooLarge, Prepared, inspect_image,
                           prepare_upload)
from service.settings import Settings

logger = logging.getLogger("bentoml.digits_and_signs")

_LENGTH = struct.Struct(">I")
_ROOT = str(Path(__file__).resolve().parents[1])
#: Formats whose decoders are C code that releases the GIL (the others go to a process).
THREAD_FORMATS = frozenset({"PNG", "JPEG"})
#: ``prepare(declared=UNREAD)``: the upload's header has not been read yet.
UNREAD = object()


class DecodeBusy(Exception):
    """Every decoder process is busy and the queue is full (HTTP 503, retry)."""


class DecodeFailed(ImageError):
    """The upload took a decoder process down (HTTP 400)."""


@dataclasses.dataclass(frozen=True)
class DecodeLimits:
    """The limits of one worker's decoding (from the settings)."""

    max_pixels: int
    max_jpeg_pixels: int
    processes: int
    queue: int
    timeout_s: float
    inline_bytes: int
    inline_work: int
    threads: int = 0
    #: A request's images together may cost this many times ``max_pixels`` (predict_batch).
    batch_factor: int = Settings.batch_decode_factor
    #: Decode work up to which a decode is light: tens of milliseconds at most.
    light_work: int = Settings.light_decode_pixels
    #: Largest light upload decoded in a thread: bounds the Python-level work a file can add to its
    #: pixels (e.g. PNG chunks, read one by one in Python while holding the GIL).
    thread_bytes: int = Settings.thread_decode_bytes

    @classmethod
    def from_settings(cls, settings: Settings) -> "DecodeLimits":
        return cls(settings.max_image_pixels, settings.max_jpeg_pixels, settings.decode_processes,
                   settings.decode_queue, settings.decode_timeout_ms / 1000, settings.inline_decode_bytes,
                   settings.inline_decode_pixels, settings.decode_threads, settings.batch_decode_factor,
                   settings.light_decode_pixels, settings.thread_decode_bytes)

    @property
    def image(self) -> dict:
        """The keyword arguments of ``prepare_upload`` / ``inspect_image``."""
        return {"max_pixels": self.max_pixels, "max_jpeg_pixels": self.max_jpeg_pixels}

    @property
    def memory_bytes(self) -> int:
        """Address space of a decoder process: the interpreter with numpy and Pillow (~0.5 GiB of
        mappings) plus 8 bytes per pixel of work (the decoded image and one reduced copy)."""
        return 768 * 2**20 + 8 * self.max_pixels


def _over_budget(work: int, budget: int | None, batch_limit: int) -> ImageTooLarge | None:
    if budget is None or work <= budget:
        return None
    return ImageTooLarge(
        f"this image's decode work ({work / 1e6:.3g} megapixels) would take the request's images past "
        f"{batch_limit / 1e6:.3g} megapixels of decoding in all: send fewer or smaller images per request"
    )


class UploadDecoder:
    """One worker's decoding (module docstring). ``await prepare(data, preprocessing)``."""

    def __init__(self, limits: DecodeLimits):
        self.limits = limits
        self._idle: asyncio.Queue[_Child] | None = None
        self._children: set[_Child] = set()
        self._waiting = 0
        self._starting: asyncio.Task | None = None
        self._heavy = asyncio.Semaphore(max(1, limits.processes - 1))
        self._thread_slots = asyncio.Semaphore(max(1, limits.threads))
        self._thread_waiting = 0
        self._threads = (ThreadPoolExecutor(limits.threads, thread_name_prefix="decoder")
                         if limits.threads else None)

    @property
    def batch_limit(self) -> int:
        """Decode work one request's images may take together."""
        return self.limits.batch_factor * self.limits.max_pixels

    async def prepare(self, data: bytes, preprocessing: str, budget: int | None = None,
                      declared: Declared | None = UNREAD) -> tuple[Prepared, int]:
        """``(prepare_upload(data, preprocessing), its decode work)``.

        ``budget``: the decode work the request may still spend (batches); an image past it is 413.
        ``declared``: the upload's header as :meth:`price_batch` read it (None: not within the
        first ``inline_bytes``), so that it is not read again; by default it is read here.
        Raises ImageError / ImageTooLarge for bad uploads, :class:`DecodeBusy` when overloaded.
        """
        limits = self.limits
        if declared is UNREAD:
            declared = self._inspect(data)
        work = declared.work if declared else None
        if work is not None:
            if error := _over_budget(work, budget, self.batch_limit):
                raise error
            if work <= limits.inline_work and len(data) <= limits.inline_bytes:
                return prepare_upload(data, preprocessing, declared=declared, **limits.image), work
            if (self._threads and work <= limits.light_work and len(data) <= limits.thread_bytes
                    and declared.format in THREAD_FORMATS):
                return await self._in_thread(data, preprocessing, declared), work
        return await self._in_child(data, preprocessing, budget, declared,
                                    heavy=work is None or work > limits.light_work)

    def _inspect(self, data: bytes) -> Declared | None:
        """The upload's header, read from its first ``inline_bytes`` (a bounded parse, cheap enough
        for the event loop); None when the header goes on past them (the decoder process will
        tell). Raises ImageError / ImageTooLarge when the header says so."""
        try:
            return inspect_image(data, **self.limits.image, header_bytes=self.limits.inline_bytes)
        except ImageTooLarge:
            raise
        except ImageError:
            if len(data) <= self.limits.inline_bytes:
                raise  # the whole file was read: it is not an image
            return None

    async def _in_thread(self, data: bytes, preprocessing: str, declared: Declared) -> Prepared:
        """Decode in one of the worker's decoder threads; as many may wait as for a process."""
        if self._thread_slots.locked() and self._thread_waiting >= self.limits.queue:
            raise DecodeBusy()
        self._thread_waiting += 1
        try:
            async with asyncio.timeout(self.limits.timeout_s):
                await self._thread_slots.acquire()
        except TimeoutError:
            raise DecodeBusy() from None
        finally:
            self._thread_waiting -= 1
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._threads,
                functools.partial(prepare_upload, data, preprocessing, declared=declared, **self.limits.image))
        finally:
            self._thread_slots.release()

    def price_batch(self, uploads: list[bytes]) -> list[Declared | None]:
        """Check a batch's decode work from its uploads' headers (those within their first
        ``inline_bytes``) before any of it is decoded; raises :class:`BatchTooCostly`. The others
        are checked as they are decoded (``prepare``'s ``budget``).

        Returns each upload's header (None: not within its first ``inline_bytes``), for
        ``prepare(..., declared=...)``: read once, not again there."""
        headers, total = [], 0
        for index, data in enumerate(uploads):
            try:
                declared = self._inspect(data)
                if declared is not None and (
                        error := _over_budget(declared.work, self.batch_limit - total, self.batch_limit)):
                    raise error
            except ImageError as exc:
                raise BatchTooCostly(index, exc) from None
            headers.append(declared)
            total += declared.work if declared else 0
        return headers

    async def start(self) -> None:
        """Start the decoder processes (else the first costly upload does)."""
        if self._idle is None:
            self._idle = asyncio.Queue()
            self._starting = asyncio.ensure_future(self._spawn(self.limits.processes))
        await asyncio.shield(self._starting)

    async def _spawn(self, n: int) -> None:
        children = await asyncio.gather(*(_Child.start(self.limits) for _ in range(n)))
        for child in children:
            self._children.add(child)
            self._idle.put_nowait(child)

    async def _in_child(self, data: bytes, preprocessing: str, budget: int | None, declared: Declared | None,
                        heavy: bool) -> tuple[Prepared, int]:
        if self._idle is None:
            await self.start()
        if (self._idle.empty() or (heavy and self._heavy.locked())) and self._waiting >= self.limits.queue:
            raise DecodeBusy()
        self._waiting += 1
        try:
            child = await asyncio.wait_for(self._acquire(heavy), self.limits.timeout_s)
        except asyncio.TimeoutError:
            raise DecodeBusy() from None
        finally:
            self._waiting -= 1
        try:
            return await self._call(child, data, preprocessing, budget, declared)
        finally:
            if heavy:
                self._heavy.release()

    async def _acquire(self, heavy: bool) -> "_Child":
        if heavy:
            await self._heavy.acquire()
        try:
            return await self._idle.get()
        except BaseException:
            if heavy:
                self._heavy.release()
            raise

    async def _call(self, child: "_Child", data: bytes, preprocessing: str, budget: int | None,
                    declared: Declared | None) -> tuple[Prepared, int]:
        request = {"preprocessing": preprocessing, "limits": self.limits.image, "budget": budget,
                   "batch_limit": self.batch_limit,
                   "declared": dataclasses.asdict(declared) if declared else None}
        try:
            return await child.call(request, data, self.limits.timeout_s)
        except (asyncio.TimeoutError, _ChildDied) as exc:
            self._children.discard(child)
            child.kill()
            asyncio.ensure_future(self._spawn(1))
            if isinstance(exc, asyncio.TimeoutError):
                raise ImageTooLarge(f"the image took longer than {self.limits.timeout_s:g} s to decode: "
                                    "it is too costly; send it smaller or as JPEG or PNG") from None
            logger.warning("digits_and_signs: a decoder process died on an upload (%s)", exc)
            raise DecodeFailed("the image could not be decoded (it broke the decoder)") from None
        finally:
            if child in self._children:
                self._idle.put_nowait(child)

    async def aclose(self) -> None:
        """Stop the decoder processes."""
        children, self._children = list(self._children), set()
        for child in children:
            child.kill()
        await asyncio.gather(*(child.process.wait() for child in children), return_exceptions=True)
        if self._threads:
            self._threads.shutdown(wait=False)


class _ChildDied(Exception):
    pass


class _Child:
    """One decoder process and its pipes."""

    def __init__(self, process: asyncio.subprocess.Process):
        self.process = process

    @classmethod
    async def start(cls, limits: DecodeLimits) -> "_Child":
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [_ROOT, os.environ.get("PYTHONPATH")])),
               "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "DECODER_MEMORY_BYTES": str(limits.memory_bytes)}
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "service.decoding", stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, env=env, cwd=_ROOT)
        _widen_pipe(process.stdin)
        return cls(process)

    async def call(self, request: dict, data: bytes, timeout: float) -> tuple[Prepared, int]:
        async with asyncio.timeout(timeout):
            try:
                _write_frame(self.process.stdin, json.dumps(request).encode() + b"\n" + data)
                await self.process.stdin.drain()
                length = _LENGTH.unpack(await self.process.stdout.readexactly(_LENGTH.size))[0]
                payload = await self.process.stdout.readexactly(length)
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                raise _ChildDied(f"exit code {self.process.returncode}") from exc
        return _decode_answer(payload)

    def kill(self) -> None:
        if self.process.returncode is None:
            try:
                self.process.kill()
            except ProcessLookupError:
                pass


def _widen_pipe(stream: asyncio.StreamWriter, size: int = 1 << 20) -> None:
    """Let the pipe to a child hold a whole upload (Linux: up to 1 MiB without privileges), so it is
    written in one event-loop turn rather than in 64 KiB steps, each waiting for a turn of a busy
    loop. Elsewhere the default stays."""
    try:
        import fcntl

        fcntl.fcntl(stream.transport.get_extra_info("pipe").fileno(), fcntl.F_SETPIPE_SZ, size)
    except (ImportError, AttributeError, OSError):
        pass


def _write_frame(stream, payload: bytes) -> None:
    stream.write(_LENGTH.pack(len(payload)) + payload)


def _encode_answer(prepared: Prepared, work: int) -> bytes:
    fields, arrays, raw = {}, [], []
    for field in dataclasses.fields(prepared):
        value = getattr(prepared, field.name)
        if isinstance(value, np.ndarray):
            value = np.ascontiguousarray(value)
            arrays.append([field.name, value.dtype.str, list(value.shape)])
            raw.append(value.tobytes())
        else:
            fields[field.name] = value
    head = {"ok": True, "work": work, "fields": fields, "arrays": arrays}
    return json.dumps(head).encode() + b"\n" + b"".join(raw)


def _decode_answer(payload: bytes) -> tuple[Prepared, int]:
    line, _, raw = payload.partition(b"\n")
    head = json.loads(line)
    if not head["ok"]:
        error = ImageTooLarge if head["status"] == 413 else ImageError
        raise error(head["message"])
    fields, offset = dict(head["fields"]), 0
    for name, dtype, shape in head["arrays"]:
        array = np.frombuffer(raw, dtype=np.dtype(dtype), count=int(np.prod(shape)), offset=offset).reshape(shape)
        fields[name] = array.copy()
        offset += array.nbytes
    return Prepared(**fields), head["work"]


def _answer(request: dict, data: bytes) -> bytes:
    """What the decoder process answers to one request."""
    try:
        if request["declared"]:  # read, and checked against the budget, by the worker
            declared = Declared(**request["declared"])
        else:
            declared = inspect_image(data, **request["limits"])
            if error := _over_budget(declared.work, request["budget"], request["batch_limit"]):
                raise error
        return _encode_answer(prepare_upload(data, request["preprocessing"], declared=declared, **request["limits"]),
                              declared.work)
    except ImageError as exc:
        return json.dumps({"ok": False, "status": exc.status_code, "message": str(exc)}).encode()
    except MemoryError:
        return json.dumps({"ok": False, "status": 413, "message": "decoding the image needs more memory "
                           "than one decode may take; send it smaller"}).encode()


def _serve() -> None:
    """The decoder process: answer framed requests on stdin until it closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the worker decides when this process ends:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # it closes stdin (or kills it)
    memory = int(os.environ.get("DECODER_MEMORY_BYTES") or 0)
    if memory:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    requests = sys.stdin.buffer
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed goes to the log, not into the answers
    while True:
        head = requests.read(_LENGTH.size)
        if len(head) < _LENGTH.size:
            return
        payload = requests.read(_LENGTH.unpack(head)[0])
        line, _, data = payload.partition(b"\n")
        _write_frame(answers, _answer(json.loads(line), data))
        answers.flush()


if __name__ == "__main__":
    _serve()
