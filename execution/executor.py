"""The model executor (``PLACEMENT=executor``): one process per accelerator, pooling every worker's rows.

It holds each family's compiled forward pass on its device and listens on a Unix socket; every HTTP
worker keeps one connection to it (``execution.client``). Frames from all workers queue per model
and row type; whenever a pass slot is free, everything queued for the model whose oldest request
waited longest goes through one pass (up to the largest bucket), so the batch follows the load with
no batching window, exactly as the in-worker queue does, but over all workers at once.

A pass of at most ``small_rows`` rows runs at once on the event loop with the ``small`` forward
passes: on a GPU machine those are the models on the host's CPU, because a GPU's fixed cost per
pass (a launch and two copies: 0.43 ms for one row, measured) is several times a small CPU pass
(0.125 ms), up to about 40 rows. Longer passes run in ``passes`` threads (the backends release the
GIL while they compute): on a GPU the next batch is assembled and copied in while the last one
computes, and the event loop keeps reading frames meanwhile. A request that waited longer than
``max_latency_s`` is answered OVERLOADED (the worker answers 503), a pass that raises answers
FAILED to every request in it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from execution.forward import CompiledForward
from execution.protocol import FAILED, OK, OVERLOADED, REQUEST, FrameReader, answer_frame, rows_of
from preprocessing import VECTOR_LENGTH

logger = logging.getLogger("bentoml.digits_and_signs")


@dataclass
class _Request:
    connection: "_Connection"
    frame_id: int
    rows: np.ndarray
    requests: int
    queued_at: float


class ExecutorServer:
    """Serves ``forwards`` (one per model, in the catalog's order) on a Unix socket.

    ``on_pass(model, requests)`` is told, after every pass, how many HTTP requests it served."""

    def __init__(self, forwards: Sequence[CompiledForward], *, max_latency_s: float, passes: int = 2,
                 small: Sequence[CompiledForward] | None = None, small_rows: int = 0,
                 on_pass: Callable[[int, int], None] = lambda model, requests: None):
        self.forwards = list(forwards)
        self.small = list(small) if small is not None else self.forwards
        self.small_rows = small_rows
        self.max_latency_s = max_latency_s
        self.passes = passes
        self.on_pass = on_pass
        self._queues: dict[tuple[int, str], deque[_Request]] = {}
        self._running = 0
        self._scheduled = False
        self._threads = ThreadPoolExecutor(passes, thread_name_prefix="forward")
        self._server: asyncio.AbstractServer | None = None
        self.connections: set[_Connection] = set()

    @property
    def listening(self) -> bool:
        return self._server is not None and self._server.is_serving()

    async def serve(self, path: str) -> None:
        """Listen on ``path`` (a stale socket file of a dead predecessor is replaced)."""
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        loop = asyncio.get_running_loop()
        self._server = await loop.create_unix_server(lambda: _Connection(self), path)
        logger.info("digits_and_signs: model executor listening at %s", path)

    async def aclose(self) -> None:
        """Stop listening and drop every worker's connection (their requests in flight fail at once)."""
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections):
            connection.transport.abort()
        self._threads.shutdown(wait=False)

    # ---- requests in

    def submit(self, connection: "_Connection", fields: tuple, body: np.ndarray) -> None:
        _, frame_id, model, row_type, requests, n = fields
        try:
            if model >= len(self.forwards):
                raise ValueError(f"no model {model}")
            rows = rows_of(body, row_type, n)
        except (ValueError, IndexError) as exc:
            connection.answer(frame_id, FAILED, message=f"a malformed frame: {exc}")
            return
        self._queues.setdefault((model, rows.dtype.str), deque()).append(
            _Request(connection, frame_id, rows, requests, time.monotonic()))
        if not self._scheduled:  # on the loop's next turn: every frame read in this one joins the pass
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._schedule)

    def _schedule(self) -> None:
        self._scheduled = False
        loop = asyncio.get_running_loop()
        while self._running < self.passes:
            batch = self._next_batch()
            if batch is None:
                return
            model, requests = batch
            parts = [r.rows for r in requests]
            if sum(len(p) for p in parts) <= self.small_rows:  # cheaper here and now than in a thread
                try:
                    self._answer(model, requests, self._forward(self.small[model], parts))
                except Exception as exc:
                    self._answer(model, requests, error=exc)
                continue
            self._running += 1
            future = loop.run_in_executor(self._threads, self._forward, self.forwards[model], parts)
            future.add_done_callback(lambda done, m=model, b=requests: self._finished(m, b, done))

    def _next_batch(self) -> tuple[int, list[_Request]] | None:
        """The waiting requests of the model and row type whose oldest request waited longest, up to
        the model's largest bucket (a longer request alone is passed in slices)."""
        now = time.monotonic()
        while True:
            waiting = [(queue[0].queued_at, key) for key, queue in self._queues.items() if queue]
            if not waiting:
                return None
            key = min(waiting)[1]
            queue, model = self._queues[key], key[0]
            limit, batch, size = self.forwards[model].max_rows, [], 0
            while queue and (not batch or size + len(queue[0].rows) <= limit):
                request = queue.popleft()
                if request.connection.closed:
                    continue
                if now - request.queued_at > self.max_latency_s:
                    request.connection.answer(request.frame_id, OVERLOADED, message=(
                        f"waited over {self.max_latency_s * 1000:g} ms for the model"))
                    continue
                batch.append(request)
                size += len(request.rows)
            if batch:
                return model, batch

    @staticmethod
    def _forward(forward: CompiledForward, parts: list[np.ndarray]) -> np.ndarray:
        """One pass: the parts assembled into one bucket-sized batch."""
        if len(parts) == 1:
            return forward(parts[0])
        n = sum(len(p) for p in parts)
        padded = np.empty((forward.bucket(n), VECTOR_LENGTH), parts[0].dtype)
        np.concatenate(parts, out=padded[:n])
        padded[n:] = 0
        return forward.run_padded(padded)[:n]

    def _finished(self, model: int, batch: list[_Request], done: asyncio.Future) -> None:
        self._running -= 1
        try:
            self._answer(model, batch, done.result())
        except Exception as exc:
            self._answer(model, batch, error=exc)
        self._schedule()

    def _answer(self, model: int, batch: list[_Request], outputs: np.ndarray | None = None,
                error: Exception | None = None) -> None:
        if error is not None:  # every request of the pass gets the error, none hangs
            logger.error("digits_and_signs: a forward pass failed: %s", error, exc_info=error)
            for request in batch:
                request.connection.answer(request.frame_id, FAILED, message=f"the forward pass failed: {error}")
        else:
            self.on_pass(model, sum(r.requests for r in batch))
            start = 0
            for request in batch:
                request.connection.answer(request.frame_id, OK, outputs[start : start + len(request.rows)])
                start += len(request.rows)


class _Connection(FrameReader):
    """One worker's connection."""

    def __init__(self, server: ExecutorServer):
        super().__init__(REQUEST, lambda fields, body: server.submit(self, fields, body))
        self.server = server
        self.closed = False

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self.server.connections.add(self)

    def answer(self, frame_id: int, status: int, output: np.ndarray | None = None, message: str = "") -> None:
        if self.closed or self.transport is None or self.transport.is_closing():
            return
        head, body = answer_frame(frame_id, status, output, message)
        self.transport.write(head)
        self.transport.write(body)

    def connection_lost(self, exc) -> None:
        self.closed = True
        self.server.connections.discard(self)
