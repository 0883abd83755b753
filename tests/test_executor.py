"""The model executor and its client (execution/executor.py, execution/client.py) on a real Unix
socket, in one event loop, with stand-in forward passes: pooling, row types, overload, failures."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from execution.batching import Overloaded
from execution.client import ExecutorClient, ExecutorFailed, ExecutorUnavailable, socket_path
from execution.executor import ExecutorServer


class StandInForward:
    """Output row i = (mean of input row i, dtype code, 1): tells rows and row types apart."""

    def __init__(self, max_rows: int = 64, seconds: float = 0.0, fail: bool = False):
        self.max_rows, self.seconds, self.fail = max_rows, seconds, fail
        self.passes: list[tuple[int, str]] = []
        self.lock = threading.Lock()

    def bucket(self, n):
        return next((b for b in (1, 2, 4, 8, 16, 32, 64) if b >= n), None)

    def run_padded(self, padded):
        return self(padded)

    def __call__(self, rows):
        with self.lock:
            self.passes.append((len(rows), rows.dtype.str))
        time.sleep(self.seconds)
        if self.fail:
            raise RuntimeError("the device fell over")
        scale = 255.0 if rows.dtype == np.uint8 else 1.0
        out = np.zeros((len(rows), 3), np.float32)
        out[:, 0] = rows.astype(np.float32).mean(axis=1) / scale
        out[:, 1] = 1.0 if rows.dtype == np.uint8 else 0.0
        out[:, 2] = 1.0
        return out


def rows(value: float, n: int = 1, dtype=np.float32) -> np.ndarray:
    return np.full((n, 784), value, dtype)


def start(server: ExecutorServer, path: str) -> ExecutorClient:
    client = ExecutorClient(path, answer_timeout_s=5.0, retry_s=0.02)
    client.start()
    return client


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "executor-1.sock")


def test_rows_go_out_and_their_own_answers_come_back(path):
    forward = StandInForward()
    passes = []
    server = ExecutorServer([forward, StandInForward()], max_latency_s=1.0, on_pass=lambda m, r: passes.append((m, r)))

    async def main():
        await server.serve(path)
        client = start(server, path)
        await asyncio.wait_for(client.connected.wait(), 5)
        assert client.ready
        one = await client.run(0, rows(0.25, 2))
        many = await asyncio.gather(*(client.run(0, rows(i / 100, 1 + i % 3)) for i in range(30)))
        await client.aclose()
        await server.aclose()
        return one, many

    one, many = asyncio.run(main())
    assert one.shape == (2, 3) and np.allclose(one[:, 0], 0.25)
    for i, out in enumerate(many):
        assert out.shape == (1 + i % 3, 3) and np.allclose(out[:, 0], i / 100)
    # the 30 requests of one turn went out as one frame: one pass, all 30 requests counted in it
    assert (0, 30) in passes
    assert sum(n for n, _ in forward.passes) == 2 + sum(1 + i % 3 for i in range(30))


def test_every_workers_rows_share_the_executors_passes(path):
    forward = StandInForward(seconds=0.03)
    passes = []
    server = ExecutorServer([forward], max_latency_s=5.0, passes=1, on_pass=lambda m, r: passes.append(r))

    async def main():
        await server.serve(path)
        clients = [start(server, path) for _ in range(4)]  # four workers
        for client in clients:
            await asyncio.wait_for(client.connected.wait(), 5)

        async def worker(client, k):
            for i in range(5):
                out = await client.run(0, rows(k + i / 10))
                assert np.allclose(out[:, 0], k + i / 10)

        await asyncio.gather(*(worker(c, k) for k, c in enumerate(clients)))
        for client in clients:
            await client.aclose()
        await server.aclose()

    asyncio.run(main())
    assert sum(passes) == 20 and len(passes) < 20 and max(passes) >= 3  # frames of several workers per pass


def test_uint8_and_float32_rows_never_share_a_pass(path):
    forward = StandInForward()
    server = ExecutorServer([forward], max_latency_s=1.0)

    async def main():
        await server.serve(path)
        client = start(server, path)
        await asyncio.wait_for(client.connected.wait(), 5)
        got = await asyncio.gather(client.run(0, rows(51, 3, np.uint8)), client.run(0, rows(0.2, 2)))
        await client.aclose()
        await server.aclose()
        return got

    as_bytes, as_floats = asyncio.run(main())
    assert np.allclose(as_bytes[:, 0], 0.2) and (as_bytes[:, 1] == 1).all()
    assert np.allclose(as_floats[:, 0], 0.2) and (as_floats[:, 1] == 0).all()
    assert sorted(forward.passes) == [(2, "<f4"), (3, "|u1")]


def test_a_failing_pass_fails_its_requests_and_the_next_ones_still_run(path):
    forward = StandInForward(fail=True)
    server = ExecutorServer([forward], max_latency_s=1.0)

    async def main():
        await server.serve(path)
        client = start(server, path)
        await asyncio.wait_for(client.connected.wait(), 5)
        with pytest.raises(ExecutorFailed, match="fell over"):
            await client.run(0, rows(0.1))
        forward.fail = False
        out = await client.run(0, rows(0.3))
        await client.aclose()
        await server.aclose()
        return out

    assert np.allclose(asyncio.run(main())[:, 0], 0.3)


def test_requests_that_waited_past_the_latency_budget_are_shed(path):
    forward = StandInForward(seconds=0.3)
    server = ExecutorServer([forward], max_latency_s=0.1, passes=1)

    async def main():
        await server.serve(path)
        client = start(server, path)
        await asyncio.wait_for(client.connected.wait(), 5)
        first = asyncio.ensure_future(client.run(0, rows(0.1)))
        await asyncio.sleep(0.05)  # the first pass is running; these wait for it, past 100 ms
        late = await asyncio.gather(*(client.run(0, rows(0.2)) for _ in range(3)), return_exceptions=True)
        await first
        await client.aclose()
        await server.aclose()
        return late

    late = asyncio.run(main())
    assert all(isinstance(x, Overloaded) for x in late)


def test_a_dead_executor_fails_requests_at_once_and_the_client_comes_back(path):
    async def main():
        slow = StandInForward(seconds=0.5)
        server = ExecutorServer([slow], max_latency_s=5.0)
        await server.serve(path)
        client = start(server, path)
        await asyncio.wait_for(client.connected.wait(), 5)
        in_flight = asyncio.ensure_future(client.run(0, rows(0.1)))
        await asyncio.sleep(0.1)
        await server.aclose()  # the executor goes away, with every connection
        started = time.monotonic()
        with pytest.raises(ExecutorUnavailable):
            await in_flight
        assert time.monotonic() - started < 0.3  # at once, not after the pass or a timeout
        assert not client.ready
        with pytest.raises(ExecutorUnavailable, match="not running"):
            await client.run(0, rows(0.2))
        # a new executor on the same socket: the client reconnects by itself
        await asyncio.sleep(0.1)
        replacement = ExecutorServer([StandInForward()], max_latency_s=5.0)
        await replacement.serve(path)
        await asyncio.wait_for(client.connected.wait(), 5)
        out = await client.run(0, rows(0.4))
        await client.aclose()
        await replacement.aclose()
        return out

    assert np.allclose(asyncio.run(main())[:, 0], 0.4)


def test_an_executor_that_does_not_answer_gives_unavailable_after_the_deadline(path):
    async def main():
        silent = await asyncio.get_running_loop().create_unix_server(asyncio.Protocol, path)
        client = ExecutorClient(path, answer_timeout_s=0.2, retry_s=0.02)
        client.start()
        await asyncio.wait_for(client.connected.wait(), 5)
        started = time.monotonic()
        with pytest.raises(ExecutorUnavailable, match="did not answer"):
            await client.run(0, rows(0.1))
        took = time.monotonic() - started
        await client.aclose()
        silent.close()
        return took

    assert 0.15 < asyncio.run(main()) < 1.0


def test_the_socket_lives_beside_bentomls_own_sockets():
    env = {"BENTOML_RUNNER_MAP": '{"digits_and_signs_executor": "unix:///tmp/bentoml-uds-x/1.sock"}'}
    assert socket_path(2, env) == "/tmp/bentoml-uds-x/executor-2.sock"
    other = socket_path(1, {"BENTOML_RUNNER_MAP": '{"digits_and_signs_executor": "tcp://127.0.0.1:4000"}'})
    assert other.endswith("executor-1.sock") and "digits_and_signs-" in other


def test_small_passes_run_at_once_on_the_small_forward_and_long_ones_on_the_big(path):
    big, small = StandInForward(), StandInForward()
    server = ExecutorServer([big], small=[small], small_rows=4, max_latency_s=1.0)

    async def main():
        await server.serve(path)
        client = start(server, path)
        await asyncio.wait_for(client.connected.wait(), 5)
        few = await client.run(0, rows(0.1, 3))
        many = await client.run(0, rows(0.2, 9))
        await client.aclose()
        await server.aclose()
        return few, many

    few, many = asyncio.run(main())
    assert np.allclose(few[:, 0], 0.1) and np.allclose(many[:, 0], 0.2)
    assert small.passes == [(3, "<f4")] and big.passes == [(9, "<f4")]


def test_a_request_waits_a_bounded_moment_for_a_connecting_executor(path):
    """Another worker may already report ready while this one still connects: its first request
    waits for the connection (up to ``connect_wait_s``) instead of failing, and then still fails
    fast when no executor comes."""
    async def main():
        client = ExecutorClient(path, answer_timeout_s=5.0, retry_s=0.02, connect_wait_s=2.0)
        client.start()  # no executor yet
        request = asyncio.ensure_future(client.run(0, rows(0.3)))
        await asyncio.sleep(0.3)
        assert not request.done() and not client.ready
        server = ExecutorServer([StandInForward()], max_latency_s=1.0)
        await server.serve(path)
        answered = await asyncio.wait_for(request, 5)
        await server.aclose()  # gone again, with no replacement: a bounded wait, then 503
        await asyncio.sleep(0.1)
        started = time.monotonic()
        with pytest.raises(ExecutorUnavailable, match="not running"):
            await client.run(0, rows(0.2))
        waited = time.monotonic() - started
        await client.aclose()
        return answered, waited

    answered, waited = asyncio.run(main())
    assert np.allclose(answered[:, 0], 0.3)
    assert 1.9 < waited < 3.0
