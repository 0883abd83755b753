"""Adaptive batching inside the worker (``PLACEMENT=worker``, the CPU default): requests that are
ready together share one forward pass.

The upload routes decode and preprocess in the worker that received the request, then queue the
784-vector here. The first request queued schedules a pass; it runs on the event loop's next
turn, after every request that became ready in the same turn has queued its vector too, and takes
everything queued (up to ``max_batch_size`` rows) through one forward pass. So the batch size
follows the load with no waiting window: one request alone is answered after one pass, and under
load the batches grow by themselves, because more requests finish their preprocessing per turn.

The pass runs on the event loop itself, not in a thread: a compiled batch-1 pass of these models
takes ~0.4 ms, less than handing it to a thread and back (in one run at 188 req/s: p99 63-100 ms
with the pass in a thread, 46-79 ms on the loop; docs/decisions.md). Requests that arrive
during a pass wait in the socket buffers meanwhile.

Why not BentoML's own dispatcher behind ``@bentoml.api(batchable=True)`` for the uploads
(docs/loadtest.md has the runs): reaching it costs an HTTP round trip per request (to a second
process, or to the worker itself through BentoML's client), which took more CPU than decoding
and preprocessing the image; and its cork algorithm waits for batches to fill, 57-67 ms median
at half load where this queue answers in 9-10 ms. The batchable BentoML APIs remain for clients
that send ready-made vectors (service/service.py).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Callable

import numpy as np


class Overloaded(Exception):
    """The request waited longer than the latency budget before its batch could start."""


class Batcher:
    """Queue single requests (n, 784) and run them through ``forward`` in shared batches."""

    def __init__(self, forward: Callable[[np.ndarray], np.ndarray], *, max_batch_size: int,
                 max_latency_ms: float, on_batch: Callable[[int], None] = lambda requests: None):
        self.forward = forward
        self.max_batch_size = max_batch_size
        self.max_latency = max_latency_ms / 1000
        self.on_batch = on_batch  # told the number of requests in every pass (metrics)
        self._queue: deque[tuple[float, np.ndarray, asyncio.Future]] = deque()
        self._running = False

    async def __call__(self, rows: np.ndarray) -> np.ndarray:
        """The model's output for ``rows``, computed in a batch with whatever else is waiting."""
        future = asyncio.get_running_loop().create_future()
        self._queue.append((time.monotonic(), rows, future))
        if not self._running:
            self._running = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    def _next_batch(self) -> list[tuple[np.ndarray, asyncio.Future]]:
        now, batch, size = time.monotonic(), [], 0
        # the longest run of waiting requests of one row type (float32 or uint8) that fits
        while self._queue and (not batch or (self._queue[0][1].dtype == batch[0][0].dtype
                                             and size + len(self._queue[0][1]) <= self.max_batch_size)):
            queued_at, rows, future = self._queue.popleft()
            if future.done():  # the client went away
                continue
            if now - queued_at > self.max_latency:
                future.set_exception(Overloaded(f"waited over {self.max_latency * 1000:g} ms for the model"))
                continue
            batch.append((rows, future))
            size += len(rows)
        return batch

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch = self._next_batch()
                if not batch:
                    continue
                parts = [rows for rows, _ in batch]
                try:
                    outputs = self.forward(parts[0] if len(parts) == 1 else np.concatenate(parts))
                except Exception as exc:  # every waiting request gets the error, none hangs
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                self.on_batch(len(batch))
                for (_, future), output in zip(batch, np.split(outputs, np.cumsum([len(p) for p in parts])[:-1])):
                    if not future.done():
                        future.set_result(output)
        finally:
            self._running = False


class Unbatched:
    """``BATCHING=off``: every request gets its own forward pass (for comparison)."""

    def __init__(self, forward: Callable[[np.ndarray], np.ndarray], *,
                 on_batch: Callable[[int], None] = lambda requests: None, **_):
        self.forward = forward
        self.on_batch = on_batch

    async def __call__(self, rows: np.ndarray) -> np.ndarray:
        self.on_batch(1)
        return self.forward(rows)
