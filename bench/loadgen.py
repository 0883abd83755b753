"""A lean closed-loop HTTP/1.1 load generator for ``make bench-gpu``: ready-made requests, keep-alive
connections, several processes, per-request latency.

Why not locust here: the GPU machine has no network and no locust, and the rates measured there
(thousands of uploads, millions of rows a second) would need most of its cores for locust alone
(1.3-1.65 ms of locust CPU per request here, docs/loadtest.md); this client spends tens of
microseconds a request. The serving benchmark and the load tests on a normal machine use locust.

Every request is built once (:func:`post`), then each connection sends them round-robin, waits for
the whole answer (``Content-Length``) and sends the next one. Only the answers that started after
the warm-up count; a connection the server closes (drain) is reopened and counted as an error.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import numpy as np


def post(path: str, body: bytes, content_type: str, host: str = "127.0.0.1", headers: dict | None = None) -> bytes:
    """The bytes of one POST request, keep-alive."""
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", f"Content-Type: {content_type}",
             f"Content-Length: {len(body)}"] + [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def multipart(files: list[tuple[str, str, bytes]], fields: dict | None = None) -> tuple[bytes, str]:
    """(body, content type) of a multipart form: ``files`` are (field, filename, data)."""
    boundary = "----bench-gpu-7f3a9c"
    parts = []
    for name, value in (fields or {}).items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, filename, data in files:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                     f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


@dataclass
class Result:
    """What one load step measured (only the answers that started after the warm-up)."""

    concurrency: int
    seconds: float
    answers: int = 0
    statuses: Counter = field(default_factory=Counter)
    latencies_ms: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    failures: int = 0  # connections refused or cut

    @property
    def ok(self) -> int:
        return self.statuses.get(200, 0)

    @property
    def errors(self) -> int:
        return self.answers - self.ok + self.failures

    @property
    def per_second(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float | None:
        return float(np.percentile(self.latencies_ms, q)) if len(self.latencies_ms) else None


async def _connection(host: str, port: int, requests: list[bytes], offset: int, start: float, end: float,
                      latencies: list, statuses: Counter, failures: list) -> None:
    reader = writer = None
    i = offset
    while time.perf_counter() < end:
        if writer is None:
            try:
                reader, writer = await asyncio.open_connection(host, port, limit=1 << 22)
            except OSError:
                failures.append(1)
                await asyncio.sleep(0.05)
                continue
        request = requests[i % len(requests)]
        i += 1
        sent = time.perf_counter()
        try:
            writer.write(request)
            if len(request) > 1 << 16:
                await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            lower = head.lower()
            at = lower.find(b"\r\ncontent-length:")  # not Inference-Header-Content-Length
            length = int(lower[at + 17 : lower.find(b"\r\n", at + 2)]) if at >= 0 else 0
            if length:
                await reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            failures.append(1)
            writer.close()
            reader = writer = None
            continue
        done = time.perf_counter()
        if sent >= start and done <= end:
            latencies.append((done - sent) * 1000)
            statuses[status] += 1
        if b"connection: close" in lower:
            writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


def _process(url: str, requests: list[bytes], connections: int, warmup: float, seconds: float,
             first: int, out) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    parts = urlsplit(url)
    latencies: list[float] = []
    statuses: Counter = Counter()
    failures: list[int] = []

    async def main():
        start = time.perf_counter() + warmup
        end = start + seconds
        await asyncio.gather(*(_connection(parts.hostname, parts.port, requests, first + c, start, end,
                                           latencies, statuses, failures) for c in range(connections)))

    asyncio.run(main())
    out.send((np.asarray(latencies, np.float32), dict(statuses), len(failures)))
    out.close()


def run(url: str, requests: list[bytes], concurrency: int, seconds: float = 8.0, warmup: float = 2.0,
        processes: int | None = None) -> Result:
    """``concurrency`` connections, each sending ``requests`` round-robin back to back, spread over
    ``processes`` client processes (default: a quarter of the cores, at most one per connection)."""
    processes = max(1, min(concurrency, processes or max(1, (os.cpu_count() or 2) // 4)))
    context = multiprocessing.get_context("spawn")
    pipes, workers = [], []
    for p in range(processes):
        share = concurrency // processes + (1 if p < concurrency % processes else 0)
        receive, send = context.Pipe(duplex=False)
        worker = context.Process(target=_process, args=(url, requests, share, warmup, seconds, p * 7919, send),
                                 daemon=True)
        worker.start()
        pipes.append(receive)
        workers.append(worker)
    result = Result(concurrency, seconds)
    latencies = []
    for receive, worker in zip(pipes, workers):
        if receive.poll(warmup + seconds + 120):
            got, statuses, failures = receive.recv()
            latencies.append(got)
            result.statuses.update(statuses)
            result.failures += failures
        worker.join(10)
        if worker.is_alive():
            worker.kill()
    result.latencies_ms = np.concatenate(latencies) if latencies else np.zeros(0, np.float32)
    result.answers = sum(result.statuses.values())
    return result
