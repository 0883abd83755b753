"""Slow and idle clients against one HTTP server: does the front door bound them?

A server (or the HAProxy in front of it) that bounds slow clients closes a connection whose
request head is not complete after its timeout (HAProxy: ``timeout http-request``, answering
``408``), and one that sends nothing at all likewise; one that does not keeps them all open
until it runs out of connections or workers. This tool opens, at a bounded rate:

* ``slow`` connections that send a valid HTTP/1.1 multipart upload head (then its body) ONE
  BYTE per ``interval`` (1 s): a ~200-byte head outlasts any short test;
* ``idle`` connections that send nothing;
* ``slow_body`` connections that send the whole head at once, then the body one byte per
  ``interval`` (the server's body or client timeout must bound these).

For every connection it records when it was established (or the connect error: ``refused``,
``reset``, ``timeout``, an errno name), when the SERVER closed it (EOF or reset, seen by
reading the socket all along, while the slow writes go on), the first line the server sent
(e.g. ``HTTP/1.1 408 Request Time-out``) and the bytes sent. After ``seconds`` it closes what
is left itself and summarises: counts per kind (established, refused, closed by the server,
still open at the end), the seconds from connect to server close (min/median/p90/max) per
kind, the response lines seen, and the number of open connections once a second.

A front door that bounds slow clients shows ``closed_by_server`` ~ all with close seconds ~ its
timeout; one that does not shows ``open_at_end`` ~ all.

CLI::

    python -m loadtest.slow_clients --host http://127.0.0.1:8080 --slow 500 --idle 2000 \\
        --seconds 30 [--slow-body 100] [--sources 8] [--rate 500] [--interval 1] --json out.json

Python: ``run(host, slow, idle, seconds, ...) -> dict`` (JSON-serialisable; runs its own event
loop, so it can run in a thread or subprocess next to a load test), or ``await attack(...)``
inside a running loop.

``--sources 8`` spreads the connections over 127.0.0.2 .. 127.0.0.9 (``--sources
127.0.0.2,127.0.0.3`` names them): any 127.x.y.z is a source on Linux loopback, so a per-source
limit of the front door (HAProxy ``src_conn_cur``) can be seen for and against. Opening 2500+
connections needs as many file descriptors: the soft RLIMIT_NOFILE is raised to the hard limit
at start, and :class:`TooFewFiles` says so when the hard limit is too low.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import errno
import ipaddress
import json
import resource
import socket
import sys
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

KINDS = ("slow", "idle", "slow_body")
NOFILE_SPARE = 64  # descriptors beyond one per connection (the loop, stdio, logs, a server nearby)
BOUNDARY = "slowclientsboundary7d3f"
# Linux: bind() picks no port, connect() does (per destination), so sources do not use up ports.
_IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


class TooFewFiles(RuntimeError):
    """The hard RLIMIT_NOFILE cannot hold the connections asked for."""


@dataclasses.dataclass
class Connection:
    """One connection's record; times are seconds since the run's start."""

    kind: str
    source: str | None
    started: float
    connected: float | None = None
    error: str | None = None          # connect failed: refused | reset | timeout | unfinished | errno name
    server_closed: float | None = None
    close_how: str | None = None      # eof | reset | an exception's name
    response: str | None = None       # first line the server sent
    bytes_sent: int = 0
    bytes_received: int = 0
    open_at_end: bool = False


# --- inputs -----------------------------------------------------------------------------------

def parse_host(host: str) -> tuple[str, int]:
    """``http://h:p`` or ``h:p`` -> (h, p); only plain HTTP."""
    parts = urlsplit(host if "://" in host else f"http://{host}")
    if parts.scheme != "http":
        raise ValueError(f"only http:// targets are supported, got {host!r}")
    if not parts.hostname:
        raise ValueError(f"no host name in {host!r}")
    return parts.hostname, parts.port or 80


def parse_sources(sources) -> list[str]:
    """None/''/0 -> [] (no bind); N -> 127.0.0.2 .. 127.0.0.(N+1); 'a,b' or a list -> those."""
    if sources is None or sources == "" or sources == 0:
        return []
    if isinstance(sources, int) or (isinstance(sources, str) and sources.strip().isdigit()):
        count = int(sources)
        if count < 0:
            raise ValueError("--sources must be >= 0")
        first = ipaddress.IPv4Address("127.0.0.2")
        return [str(first + i) for i in range(count)]
    items = sources.split(",") if isinstance(sources, str) else list(sources)
    return [str(ipaddress.ip_address(item.strip())) for item in items if str(item).strip()]


def request_head(host_header: str, path: str, body_bytes: int) -> bytes:
    """A valid HTTP/1.1 multipart upload head announcing ``body_bytes``."""
    return (f"POST {path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: loadtest-slow-clients\r\n"
            f"Accept: */*\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
            f"Content-Length: {body_bytes}\r\n\r\n").encode("ascii")


def request_body(body_bytes: int) -> bytes:
    """Exactly ``body_bytes``: a multipart form with one PNG-looking ``image`` part when it fits."""
    pre = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"digit.png\"\r\n"
           f"Content-Type: image/png\r\n\r\n").encode("ascii") + b"\x89PNG\r\n\x1a\n"
    post = f"\r\n--{BOUNDARY}--\r\n".encode("ascii")
    fill = body_bytes - len(pre) - len(post)
    return pre + b"\0" * fill + post if fill >= 0 else b"\0" * body_bytes


def interleave(counts: dict[str, int]) -> list[str]:
    """The kinds in opening order, each spread evenly over the run (not all slow ones first)."""
    order = [((j + 0.5) / n, KINDS.index(kind), kind) for kind, n in counts.items() for j in range(n)]
    return [kind for *_, kind in sorted(order)]


def raise_nofile(need: int) -> dict:
    """Raise the soft RLIMIT_NOFILE to the hard limit; TooFewFiles when ``need`` cannot fit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    infinite = hard == resource.RLIM_INFINITY
    if not infinite and hard < need:
        raise TooFewFiles(
            f"{need} open files needed (one per connection + {NOFILE_SPARE} spare) but the hard "
            f"RLIMIT_NOFILE is {hard}: raise it (as root `ulimit -Hn`, systemd LimitNOFILE=, "
            f"docker --ulimit nofile=N:N) or ask for fewer connections")
    wanted = max(need, 1 << 20) if infinite else hard
    if soft != resource.RLIM_INFINITY and soft < wanted:
        for value in (wanted, need):
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (value, hard))
                break
            except (ValueError, OSError):
                continue
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if soft != resource.RLIM_INFINITY and soft < need:
            raise TooFewFiles(f"{need} open files needed but the soft RLIMIT_NOFILE stays at {soft}")

    def show(value):
        return None if value == resource.RLIM_INFINITY else value

    return {"soft": show(soft), "hard": show(hard), "needed": need}


# --- the connections --------------------------------------------------------------------------

class _State:
    """Counters shared by all connections, for the timeline and progress lines."""

    def __init__(self):
        self.t0 = time.monotonic()
        self.open = self.connecting = self.closed_by_server = self.failed = 0
        self.protocols: list[_Protocol] = []
        self.internal_errors: list[str] = []

    def now(self) -> float:
        return time.monotonic() - self.t0

    def snapshot(self, t: float) -> dict:
        return {"t": round(t, 3), "open": self.open, "connecting": self.connecting,
                "closed_by_server": self.closed_by_server, "failed": self.failed}


class _Protocol(asyncio.Protocol):
    """Reads all the time: the first response line and the moment the server closes."""

    def __init__(self, conn: Connection, state: _State):
        self.conn, self.state = conn, state
        self.transport: asyncio.Transport | None = None
        self.ours = False  # we closed it (at the end): not a server close
        self._first = b""

    def connection_made(self, transport):
        self.transport = transport
        self.conn.connected = self.state.now()
        self.state.open += 1
        self.state.protocols.append(self)

    def data_received(self, data: bytes):
        self.conn.bytes_received += len(data)
        if self.conn.response is None:
            self._first += data[:512]
            if b"\n" in self._first or len(self._first) >= 512:
                self._take_response()

    def _take_response(self):
        if self.conn.response is None and self._first:
            self.conn.response = self._first.split(b"\n", 1)[0].strip()[:200].decode("latin-1")

    def eof_received(self):
        self._server_closed("eof")
        return False  # close our side too

    def connection_lost(self, exc):
        if exc is None:
            how = "eof"
        elif isinstance(exc, (ConnectionResetError, BrokenPipeError)):
            how = "reset"
        else:
            how = type(exc).__name__.lower()
        self._server_closed(how)

    def _server_closed(self, how: str):
        if self.ours or self.conn.server_closed is not None or self.conn.connected is None:
            return
        self._take_response()
        self.conn.server_closed, self.conn.close_how = self.state.now(), how
        self.state.open -= 1
        self.state.closed_by_server += 1


def _error_name(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ConnectionResetError):
        return "reset"
    if isinstance(exc, OSError) and exc.errno in errno.errorcode:
        return errno.errorcode[exc.errno].lower()
    return type(exc).__name__.lower()


async def _connect(conn: Connection, state: _State, family: int, address: tuple,
                   timeout: float) -> _Protocol | None:
    """Connect (bound to the source, if any); None with ``conn.error`` set when it fails."""
    loop = asyncio.get_running_loop()
    sock = None
    protocol = _Protocol(conn, state)
    state.connecting += 1
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        if conn.source:
            try:
                sock.setsockopt(socket.IPPROTO_IP, _IP_BIND_ADDRESS_NO_PORT, 1)
            except OSError:
                pass
            sock.bind((conn.source, 0))
        await asyncio.wait_for(loop.sock_connect(sock, address), timeout)
        await loop.create_connection(lambda: protocol, sock=sock)
    except asyncio.CancelledError:  # the end came while connecting
        if conn.connected is None:
            conn.error = "unfinished"
            state.failed += 1
        protocol.ours = True
        if sock is not None:
            sock.close()
        raise
    except OSError as exc:  # TimeoutError, refused, reset, EMFILE, EADDRNOTAVAIL, ...
        conn.error = _error_name(exc)
        state.failed += 1
        if sock is not None:
            sock.close()
        return None
    finally:
        state.connecting -= 1
    return protocol


async def _client(conn: Connection, state: _State, family: int, address: tuple, head: bytes,
                  body: bytes, interval: float, timeout: float) -> None:
    """One connection: connect, then send its bytes at the kind's pace (the loop reads)."""
    protocol = await _connect(conn, state, family, address, timeout)
    if protocol is None or conn.kind == "idle":
        return
    transport = protocol.transport
    if conn.kind == "slow_body":
        transport.write(head)
        conn.bytes_sent += len(head)
        trickle = body
    else:
        trickle = head + body
    loop = asyncio.get_running_loop()
    start = loop.time()
    for k in range(len(trickle)):
        if k:  # on a fixed grid: the k-th byte at k * interval, however late the loop woke
            delay = start + k * interval - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        if transport.is_closing() or conn.server_closed is not None:
            return
        transport.write(trickle[k:k + 1])
        conn.bytes_sent += 1
    # everything sent: the connection stays open (the loop reads) until the server or the end


# --- the run ----------------------------------------------------------------------------------

def _distribution(values: list[float]) -> dict:
    if not values:
        return {"n": 0, "min": None, "median": None, "p90": None, "max": None}
    array = np.asarray(values, dtype=float)
    return {"n": len(values), "min": round(float(array.min()), 3),
            "median": round(float(np.percentile(array, 50)), 3),
            "p90": round(float(np.percentile(array, 90)), 3), "max": round(float(array.max()), 3)}


def _counts(conns: list[Connection], requested: int) -> dict:
    """Counts, close seconds, response lines and bytes of one kind (or all)."""
    errors = Counter(c.error for c in conns if c.error)
    closed = [c for c in conns if c.server_closed is not None]
    return {
        "requested": requested,
        "attempted": len(conns),
        "established": sum(c.connected is not None for c in conns),
        "refused": errors.get("refused", 0),
        "connect_errors": dict(sorted(errors.items())),
        "closed_by_server": len(closed),
        "close_how": dict(sorted(Counter(c.close_how for c in closed).items())),
        "open_at_end": sum(c.open_at_end for c in conns),
        "close_seconds": _distribution([c.server_closed - c.connected for c in closed]),
        "responses": dict(Counter(c.response for c in conns if c.response is not None).most_common()),
        "bytes_sent": sum(c.bytes_sent for c in conns),
    }


async def attack(host: str, slow: int, idle: int, seconds: float, *, slow_body: int = 0,
                 interval: float = 1.0, rate: float = 500.0, sources=None,
                 path: str = "/mnist/predict", body_bytes: int = 1000, connect_timeout: float = 5.0,
                 progress_every: float | None = 5.0, records: bool = False) -> dict:
    """The attack in the running event loop; returns the summary (see :func:`run`)."""
    if seconds <= 0 or rate <= 0 or interval <= 0:
        raise ValueError("seconds, rate and interval must be > 0")
    requested = {"slow": int(slow), "idle": int(idle), "slow_body": int(slow_body)}
    if min(requested.values()) < 0:
        raise ValueError("connection counts must be >= 0")
    total = sum(requested.values())
    nofile = raise_nofile(total + NOFILE_SPARE)
    name, port = parse_host(host)
    source_list = parse_sources(sources)
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(name, port, type=socket.SOCK_STREAM,
                                   family=socket.AF_INET if source_list else socket.AF_UNSPEC)
    family, *_, address = infos[0]
    host_header = name if port == 80 else f"{name}:{port}"
    head, body = request_head(host_header, path, body_bytes), request_body(body_bytes)

    state = _State()
    conns: list[Connection] = []
    tasks: set[asyncio.Task] = set()
    timeline: list[dict] = []

    def done(task: asyncio.Task):
        tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            state.internal_errors.append(repr(task.exception()))

    async def opener():
        for i, kind in enumerate(interleave(requested)):
            delay = i / rate - state.now()
            if delay > 0:
                await asyncio.sleep(delay)
            if state.now() >= seconds:
                return
            conn = Connection(kind, source_list[i % len(source_list)] if source_list else None,
                              round(state.now(), 4))
            conns.append(conn)
            task = asyncio.create_task(_client(conn, state, family, address, head, body, interval,
                                               connect_timeout))
            tasks.add(task)
            task.add_done_callback(done)

    async def sampler():
        next_progress = progress_every or float("inf")
        for k in range(1, int(seconds) + 1):
            await asyncio.sleep(max(0.0, k - state.now()))
            timeline.append(state.snapshot(k))
            if k >= next_progress:
                next_progress += progress_every
                print(f"slow_clients t={k}s: open {state.open}, connecting {state.connecting}, "
                      f"closed by server {state.closed_by_server}, failed {state.failed} "
                      f"(of {len(conns)} opened, {total} asked)", file=sys.stderr, flush=True)

    helpers = [asyncio.create_task(opener()), asyncio.create_task(sampler())]
    try:
        await asyncio.sleep(max(0.0, seconds - state.now()))
    finally:
        elapsed = state.now()
        for helper in helpers:
            helper.cancel()
        if not timeline or timeline[-1]["t"] < seconds - 0.05:
            timeline.append(state.snapshot(seconds))
        for protocol in state.protocols:  # the end: still open is what the server did not close
            if protocol.conn.server_closed is None:
                protocol.conn.open_at_end = True
                protocol.ours = True
                protocol.transport.close()
        pending = list(tasks)
        for task in pending:
            task.cancel()
        await asyncio.gather(*helpers, *pending, return_exceptions=True)
        await asyncio.sleep(0)  # connection_lost of the closed transports

    by_kind = {kind: _counts([c for c in conns if c.kind == kind], requested[kind]) for kind in KINDS}
    totals = _counts(conns, total)
    summary = {
        "target": f"http://{host_header}{path}",
        "seconds": seconds,
        "elapsed": round(elapsed, 3),
        "interval": interval,
        "rate": rate,
        "connect_timeout": connect_timeout,
        "sources": source_list,
        "nofile": nofile,
        "kinds": by_kind,
        "totals": totals,
        "responses": totals["responses"],
        "timeline": timeline,
        "internal_errors": state.internal_errors,
    }
    if records:
        summary["connections"] = [dataclasses.asdict(c) for c in conns]
    return summary


def run(host: str, slow: int, idle: int, seconds: float, **options) -> dict:
    """Run the attack in a new event loop (any thread); a JSON-serialisable summary.

    ``options``: ``slow_body`` (connections), ``interval`` (s per byte, 1), ``rate``
    (connections opened per s, 500), ``sources`` (N, 'a,b' or a list), ``path``, ``body_bytes``
    (announced Content-Length, 1000), ``connect_timeout`` (5 s), ``progress_every`` (s, None:
    quiet), ``records`` (add every connection's record as ``connections``).
    """
    return asyncio.run(attack(host, slow, idle, seconds, **options))


# --- CLI --------------------------------------------------------------------------------------

def format_summary(summary: dict) -> str:
    """A few lines for people: per kind counts and close seconds, responses, the open timeline."""
    lines = [f"slow clients against {summary['target']} for {summary['elapsed']} s "
             f"(1 byte / {summary['interval']} s, {summary['rate']:g} connections/s, sources: "
             f"{', '.join(summary['sources']) or 'default'})",
             f"{'kind':<10}{'asked':>7}{'estab.':>8}{'refused':>8}{'other err':>10}"
             f"{'srv closed':>11}{'open@end':>9}   close s min / median / p90 / max"]
    for kind, row in list(summary["kinds"].items()) + [("all", summary["totals"])]:
        if not row["requested"]:
            continue
        dist = row["close_seconds"]
        close = " / ".join("-" if dist[k] is None else f"{dist[k]:.2f}" for k in ("min", "median", "p90", "max"))
        other = sum(row["connect_errors"].values()) - row["refused"]
        lines.append(f"{kind:<10}{row['requested']:>7}{row['established']:>8}{row['refused']:>8}{other:>10}"
                     f"{row['closed_by_server']:>11}{row['open_at_end']:>9}   {close}")
    errors = summary["totals"]["connect_errors"]
    if errors:
        lines.append("connect errors: " + ", ".join(f"{k} {v}" for k, v in errors.items()))
    lines.append("responses: " + (", ".join(f"{v} x {k!r}" for k, v in summary["responses"].items()) or "none"))
    lines.append("open each second: " + " ".join(str(s["open"]) for s in summary["timeline"]))
    if summary["internal_errors"]:
        lines.append(f"INTERNAL ERRORS: {summary['internal_errors'][:5]}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.slow_clients",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", required=True, help="http://HOST:PORT of the server (or front door)")
    parser.add_argument("--slow", type=int, default=0, help="connections sending the head 1 byte per interval")
    parser.add_argument("--idle", type=int, default=0, help="connections sending nothing")
    parser.add_argument("--slow-body", type=int, default=0,
                        help="connections sending the head at once, then the body 1 byte per interval")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long, then everything is closed")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between two bytes (1)")
    parser.add_argument("--rate", type=float, default=500.0, help="connections opened per second (500)")
    parser.add_argument("--sources", default=None,
                        help="N (127.0.0.2 .. 127.0.0.N+1) or a comma list of source addresses")
    parser.add_argument("--path", default="/mnist/predict", help="request path (/mnist/predict)")
    parser.add_argument("--body-bytes", type=int, default=1000, help="announced Content-Length (1000)")
    parser.add_argument("--connect-timeout", type=float, default=5.0, help="seconds (5)")
    parser.add_argument("--progress", type=float, default=5.0, help="seconds between progress lines; 0: none")
    parser.add_argument("--json", type=Path, default=None, help="write the summary here")
    parser.add_argument("--records", action="store_true", help="add every connection's record to the JSON")
    args = parser.parse_args(argv)
    try:
        summary = run(args.host, args.slow, args.idle, args.seconds, slow_body=args.slow_body,
                      interval=args.interval, rate=args.rate, sources=args.sources, path=args.path,
                      body_bytes=args.body_bytes, connect_timeout=args.connect_timeout,
                      progress_every=args.progress or None, records=args.records)
    except (TooFewFiles, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=1) + "\n")
    print(format_summary(summary))
    return 1 if summary["internal_errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
