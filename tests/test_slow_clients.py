"""loadtest.slow_clients against small asyncio servers in a thread, over real loopback sockets:
one that answers 408 and closes when a head (or its body) is not complete after T seconds, one
that never closes. Checks what the tool records: close times ~T per kind, the 408 line, counts,
still-open connections, source addresses, the open timeline, the CLI's JSON."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from loadtest import slow_clients
from loadtest.slow_clients import interleave, parse_sources, request_body, request_head, run

REPO = Path(__file__).resolve().parents[1]
LINE_408 = "HTTP/1.1 408 Request Time-out"


class Server:
    """HTTP server on 127.0.0.1 in its own thread and loop. With ``timeout`` T: 408 and close when
    the head, or after it the body, is not complete within T s; 200 and close for a complete
    request. ``timeout=None``: never closes a connection itself. Records every peer address."""

    def __init__(self, timeout: float | None):
        self.timeout = timeout
        self.peers: list[str] = []
        self.answered: list[int] = []
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def __enter__(self) -> Server:
        self._thread.start()
        assert self._ready.wait(5), "test server did not start"
        return self

    def __exit__(self, *exc):
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _main(self):
        self._loop, self._stop, handlers = asyncio.get_running_loop(), asyncio.Event(), set()

        async def handle(reader, writer):
            handlers.add(asyncio.current_task())
            self.peers.append(writer.get_extra_info("peername")[0])
            try:
                await self._serve(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()
                handlers.discard(asyncio.current_task())

        server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        await self._stop.wait()
        server.close()
        for task in list(handlers):
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)

    async def _serve(self, reader, writer):
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.timeout)
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            await asyncio.wait_for(reader.readexactly(length), self.timeout)
        except TimeoutError:
            writer.write(f"{LINE_408}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
            await writer.drain()
            return
        self.answered.append(length)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()


def test_helpers():
    """Sources, opening order, request bytes."""
    assert parse_sources(None) == [] and parse_sources("0") == []
    assert parse_sources(3) == ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    assert parse_sources("8")[-1] == "127.0.0.9"
    assert parse_sources("127.0.0.7, 127.0.1.1") == ["127.0.0.7", "127.0.1.1"]
    with pytest.raises(ValueError):
        parse_sources("127.0.0.x")
    order = interleave({"slow": 2, "idle": 4, "slow_body": 0})
    assert sorted(order) == ["idle"] * 4 + ["slow"] * 2
    assert order[:3].count("slow") == 1  # spread, not all of a kind first
    head = request_head("h:1", "/mnist/predict", 1000)
    assert head.startswith(b"POST /mnist/predict HTTP/1.1\r\nHost: h:1\r\n")
    assert head.endswith(b"Content-Length: 1000\r\n\r\n") and head.count(b"\r\n\r\n") == 1
    assert b"multipart/form-data; boundary=" in head
    assert len(request_body(1000)) == 1000 and request_body(1000).endswith(b"--\r\n")
    assert len(request_body(10)) == 10


def test_bounded_server_closes_slow_and_idle_after_its_timeout():
    """Against a 1.5 s head/body timeout: every kind closed by the server after ~1.5 s with the
    408 line; the slow ones sent ~1 byte per interval meanwhile; the open timeline falls to 0."""
    # bytes at 0, 0.2, ..., 1.4, 1.6: none falls on the server's close at 1.5 s, where it would
    # race it and turn the close into a reset
    timeout, interval = 1.5, 0.2
    with Server(timeout) as server:
        summary = run(server.url, 20, 20, 3.2, slow_body=10, interval=interval, rate=200,
                      progress_every=None, records=True)
    json.dumps(summary)  # serialisable
    assert summary["internal_errors"] == []
    assert len(server.peers) == 50
    for kind, n in (("slow", 20), ("idle", 20), ("slow_body", 10)):
        row = summary["kinds"][kind]
        assert (row["requested"], row["established"], row["closed_by_server"]) == (n, n, n), (kind, row)
        assert row["open_at_end"] == 0 and row["refused"] == 0 and row["connect_errors"] == {}
        dist = row["close_seconds"]
        assert dist["n"] == n
        assert timeout - 0.05 <= dist["min"] <= dist["median"] <= dist["p90"] <= dist["max"], (kind, dist)
        assert dist["max"] <= timeout + 0.5, (kind, dist)
        assert row["responses"] == {LINE_408: n}
    assert summary["responses"] == {LINE_408: 50}
    how = summary["totals"]["close_how"]  # a reset only if a byte raced the server's close
    assert summary["totals"]["closed_by_server"] == 50 and set(how) <= {"eof", "reset"} and how["eof"] >= 45

    head_len = len(request_head(f"127.0.0.1:{server.port}", "/mnist/predict", 1000))
    expected = int(timeout / interval) + 1  # a byte at 0, 0.2, ..., 1.4
    for record in summary["connections"]:
        sent = {"idle": 0, "slow": expected, "slow_body": head_len + expected}[record["kind"]]
        assert abs(record["bytes_sent"] - sent) <= 1, record
        assert record["response"] == LINE_408 and record["error"] is None
    # 50 opened at 200/s by ~0.25 s, all closed by ~1.75 s + tolerance
    opens = {s["t"]: s["open"] for s in summary["timeline"]}
    assert opens[1] == 50 and opens[3] == 0, summary["timeline"]
    assert summary["timeline"][-1]["closed_by_server"] == 50


def test_unbounded_server_leaves_them_open_at_the_end():
    """A server that never closes: nothing closed by it, all still open at the end, no
    responses; the opening rate is kept."""
    rate = 40.0
    with Server(None) as server:
        summary = run(server.url, 10, 10, 1.6, slow_body=4, interval=0.2, rate=rate,
                      progress_every=None, records=True)
    assert summary["internal_errors"] == []
    for kind, n in (("slow", 10), ("idle", 10), ("slow_body", 4)):
        row = summary["kinds"][kind]
        assert (row["established"], row["open_at_end"], row["closed_by_server"]) == (n, n, 0), (kind, row)
        assert row["close_seconds"]["n"] == 0 and row["close_seconds"]["median"] is None
    assert summary["responses"] == {}
    assert summary["timeline"][0]["t"] == 1 and summary["timeline"][-1]["open"] == 24
    starts = sorted(r["started"] for r in summary["connections"])
    assert starts[-1] >= (24 - 1) / rate - 0.01  # 24 connections at 40/s take ~0.58 s
    slow_sent = [r["bytes_sent"] for r in summary["connections"] if r["kind"] == "slow"]
    assert all(4 <= sent <= 9 for sent in slow_sent), slow_sent  # ~1.0-1.6 s at 0.2 s a byte


def test_completed_request_gets_its_answer_and_refused_is_counted():
    """A fast 'slow' client finishes its request and records the 200; a port with no server
    gives refused connections, counted, not raised."""
    with Server(5.0) as server:
        summary = run(server.url, 3, 0, 1.5, interval=0.001, body_bytes=40, progress_every=None)
    assert server.answered == [40, 40, 40]
    assert summary["responses"] == {"HTTP/1.1 200 OK": 3}
    assert summary["kinds"]["slow"]["closed_by_server"] == 3

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    summary = run(f"http://127.0.0.1:{port}", 2, 3, 0.5, progress_every=None)
    assert summary["totals"]["refused"] == 5 and summary["totals"]["established"] == 0
    assert summary["kinds"]["idle"]["connect_errors"] == {"refused": 3}


def test_server_reset_is_a_server_close():
    """A server that resets (SO_LINGER 0) after 0.4 s: recorded as closed by the server, 'reset'."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted = []

    def serve():
        for _ in range(4):
            conn, _ = listener.accept()
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            accepted.append(conn)
        time.sleep(0.4)
        for conn in accepted:
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        summary = run(f"http://127.0.0.1:{listener.getsockname()[1]}", 2, 2, 1.2, interval=0.1,
                      progress_every=None)
    finally:
        thread.join(5)
        listener.close()
    assert summary["totals"]["closed_by_server"] == 4 and summary["totals"]["open_at_end"] == 0
    assert summary["totals"]["close_how"] == {"reset": 4}
    assert 0.3 <= summary["totals"]["close_seconds"]["median"] <= 0.8


def test_sources_spread_over_two_addresses():
    """--sources 2: the server sees 127.0.0.2 and 127.0.0.3, half each."""
    with Server(None) as server:
        summary = run(server.url, 2, 4, 0.6, sources=2, progress_every=None)
    assert summary["sources"] == ["127.0.0.2", "127.0.0.3"]
    assert summary["totals"]["established"] == 6
    assert sorted(server.peers) == ["127.0.0.2"] * 3 + ["127.0.0.3"] * 3


def test_too_few_files_is_a_clear_error(monkeypatch):
    """A hard RLIMIT_NOFILE below the connections asked for stops before connecting."""
    monkeypatch.setattr(slow_clients.resource, "getrlimit", lambda _: (256, 1024))
    with pytest.raises(slow_clients.TooFewFiles, match="hard RLIMIT_NOFILE is 1024"):
        run("http://127.0.0.1:9", 500, 2000, 1.0, progress_every=None)


def test_cli_writes_json_and_progress(tmp_path):
    """The CLI against the 408 server: exit 0, the JSON summary, progress lines on stderr."""
    out = tmp_path / "out.json"
    with Server(1.3) as server:
        done = subprocess.run(
            [sys.executable, "-m", "loadtest.slow_clients", "--host", server.url, "--slow", "4",
             "--idle", "6", "--seconds", "2.2", "--interval", "0.2", "--progress", "1",
             "--json", str(out)], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "slow_clients t=1s: open 10," in done.stderr
    assert "slow_clients t=2s: open 0, connecting 0, closed by server 10," in done.stderr
    assert "408 Request Time-out" in done.stdout
    summary = json.loads(out.read_text())
    assert summary["totals"]["closed_by_server"] == 10 and summary["responses"] == {LINE_408: 10}
    assert 1.25 <= summary["kinds"]["idle"]["close_seconds"]["median"] <= 1.7
    assert "connections" not in summary


def test_cli_too_few_files_exits_2(tmp_path):
    """The CLI reports a too-low hard limit as an error line and exit 2."""
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_NOFILE, (200, 200)); "
            "from loadtest.slow_clients import main; sys.exit(main(sys.argv[1:]))")
    done = subprocess.run([sys.executable, "-c", code, "--host", "http://127.0.0.1:9", "--idle", "500",
                           "--seconds", "1"], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "error:" in done.stderr and "RLIMIT_NOFILE is 200" in done.stderr
