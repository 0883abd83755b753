"""An HTTP worker's side of the model executor (``PLACEMENT=executor``): rows out, probabilities back.

One :class:`ExecutorClient` per worker keeps one connection to its executor's socket. Requests
that are ready in the same event-loop turn go out together, one frame per model and row type (the
executor then pools the frames of every worker into its passes). While the executor is down --
not started yet, or being restarted after it died -- the client reconnects in the background,
``ready`` is False (``/readyz`` answers 503), and a request waits at most ``connect_wait_s`` for the
connection (another worker of the same server may already answer ``/readyz`` with 200 while this
one is still connecting) before it gets :class:`ExecutorUnavailable` (503 with Retry-After), never a
hang: requests in flight when the connection drops fail
the same way, and so does a request whose answer takes longer than its deadline.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import logging
import os
import socket
import tempfile
from dataclasses import dataclass, field

import numpy as np

from execution.batching import Overloaded
from execution.protocol import ANSWER, OK, OVERLOADED, FrameReader, request_frame

logger = logging.getLogger("bentoml.digits_and_signs")

#: The BentoML service name of the model executor (its socket lives beside BentoML's own).
EXECUTOR_SERVICE = "digits_and_signs_executor"


class ExecutorUnavailable(Exception):
    """The model executor is not there (starting, restarting) or did not answer in time (HTTP 503)."""


class ExecutorFailed(Exception):
    """The executor's forward pass raised (its message says what)."""


def socket_path(index: int, environ=os.environ) -> str:
    """The socket of executor ``index`` (1-based): in the folder of BentoML's own sockets of this
    ``bentoml serve`` (``BENTOML_RUNNER_MAP``, which every process of it inherits), so that each
    server has its own and nothing is left behind after it; a temporary folder named after the
    server's address otherwise (BentoML on TCP)."""
    address = json.loads(environ.get("BENTOML_RUNNER_MAP") or "{}").get(EXECUTOR_SERVICE, "")
    if address.startswith("unix://"):
        folder = os.path.dirname(address[len("unix://"):])
    else:
        key = hashlib.sha1((address or str(os.getppid())).encode()).hexdigest()[:12]
        folder = os.path.join(tempfile.gettempdir(), f"digits_and_signs-{key}")
        os.makedirs(folder, mode=0o700, exist_ok=True)
    return os.path.join(folder, f"executor-{index}.sock")


@dataclass
class _Frame:
    futures: list[asyncio.Future]
    sizes: list[int]


@dataclass
class _Outgoing:
    rows: list[np.ndarray] = field(default_factory=list)
    futures: list[asyncio.Future] = field(default_factory=list)


class ExecutorClient:
    """``await client.run(model, rows)``: the model's softmax output for (n, 784) rows, computed by
    the executor in a pass shared with every worker's requests. ``model``: the family's index."""

    def __init__(self, path: str, *, answer_timeout_s: float, retry_s: float = 0.1, connect_wait_s: float = 0.0):
        self.path = path
        self.answer_timeout_s = answer_timeout_s
        self.connect_wait_s = connect_wait_s
        self.retry_s = retry_s
        self._reader: FrameReader | None = None
        self._frames: dict[int, _Frame] = {}
        self._outgoing: dict[tuple[int, str], _Outgoing] = {}
        self._flush_scheduled = False
        self._ids = itertools.count(1)
        self._connector: asyncio.Task | None = None
        self._closed = False
        self.connected = asyncio.Event()

    @property
    def ready(self) -> bool:
        return self.connected.is_set()

    def start(self) -> None:
        """Connect in the background (and again whenever the connection drops)."""
        if self._connector is None or self._connector.done():
            self._connector = asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        loop, warned = asyncio.get_running_loop(), False
        while not self._closed:
            try:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.setblocking(False)
                await loop.sock_connect(sock, self.path)
                _, reader = await loop.create_unix_connection(
                    lambda: _ClientReader(self), sock=sock)
            except OSError:
                sock.close()
                if not warned:
                    logger.info("digits_and_signs: waiting for the model executor at %s", self.path)
                    warned = True
                await asyncio.sleep(self.retry_s)
                continue
            self._reader = reader
            self.connected.set()
            logger.info("digits_and_signs: connected to the model executor at %s", self.path)
            return

    def _lost(self) -> None:
        """The connection dropped: every frame in flight fails now, and we reconnect."""
        self._reader = None
        self.connected.clear()
        frames, self._frames = self._frames, {}
        for frame in frames.values():
            for future in frame.futures:
                if not future.done():
                    future.set_exception(ExecutorUnavailable("the model executor stopped; retry in a moment"))
        if not self._closed:
            logger.warning("digits_and_signs: lost the model executor; reconnecting")
            self.start()

    async def run(self, model: int, rows: np.ndarray) -> np.ndarray:
        if self._reader is None and self.connect_wait_s > 0:
            try:
                async with asyncio.timeout(self.connect_wait_s):
                    await self.connected.wait()
            except TimeoutError:
                pass
        if self._reader is None:
            raise ExecutorUnavailable("the model executor is not running (it is starting or restarting); "
                                      "retry in a moment")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        outgoing = self._outgoing.setdefault((model, rows.dtype.str), _Outgoing())
        outgoing.rows.append(rows)
        outgoing.futures.append(future)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        try:
            async with asyncio.timeout(self.answer_timeout_s):
                return await future
        except TimeoutError:
            raise ExecutorUnavailable(f"the model executor did not answer within {self.answer_timeout_s:g} s; "
                                      "retry in a moment") from None

    def _flush(self) -> None:
        """Send what this turn queued: one frame per model and row type."""
        self._flush_scheduled = False
        outgoing, self._outgoing = self._outgoing, {}
        reader = self._reader
        for (model, _), batch in outgoing.items():
            futures = [f for f in batch.futures if not f.done()]
            if not futures:
                continue
            if reader is None or reader.transport is None or reader.transport.is_closing():
                for future in futures:
                    future.set_exception(ExecutorUnavailable("the model executor stopped; retry in a moment"))
                continue
            rows = [r for r, f in zip(batch.rows, batch.futures) if not f.done()]
            frame_id = next(self._ids) & 0xFFFFFFFF
            self._frames[frame_id] = _Frame(futures, [len(r) for r in rows])
            head, body = request_frame(frame_id, model, rows[0] if len(rows) == 1 else np.concatenate(rows),
                                       len(rows))
            reader.transport.write(head)
            reader.transport.write(body)

    def _answer(self, fields: tuple, body: np.ndarray) -> None:
        _, frame_id, status, rows, classes = fields
        frame = self._frames.pop(frame_id, None)
        if frame is None:
            return
        if status == OK:
            output = body.view(np.float32).reshape(rows, classes)
            start = 0
            for future, size in zip(frame.futures, frame.sizes):
                if not future.done():
                    future.set_result(output[start : start + size])
                start += size
            return
        message = bytes(body).decode(errors="replace")
        error = Overloaded(message) if status == OVERLOADED else ExecutorFailed(message)
        for future in frame.futures:
            if not future.done():
                future.set_exception(error)

    async def aclose(self) -> None:
        self._closed = True
        if self._connector is not None:
            self._connector.cancel()
        if self._reader is not None and self._reader.transport is not None:
            self._reader.transport.close()


class _ClientReader(FrameReader):
    def __init__(self, client: ExecutorClient):
        super().__init__(ANSWER, client._answer)
        self.client = client

    def connection_lost(self, exc) -> None:
        if self.client._reader is self:
            self.client._lost()


