"""Keep-alive connections spread over a server's workers (``REBALANCE``, on by default).

Every worker of ``bentoml serve`` accepts from one shared listening socket, and a connection stays
with the worker that accepted it. When clients open their connections in a burst (a pool, a load
balancer, a load test), the worker that wakes first accepts them all: measured with 32 keep-alive
clients posting small PNGs, one run had one worker at 93 % of a core and the other idle (767 req/s),
the next both busy (1183 req/s); without a handover 7 of 38 such runs had one worker idle, with it
none of 32 (docs/peers.md). Nothing in uvicorn or BentoML moves a connection afterwards.

So each worker publishes, at most four times a second and only when it answers, the share of a
core it used in a small shared file (one slot per worker, named after the server's arbiter
process); a worker that answered nothing for ``stale_s`` counts as idle. A worker that is busy (at least
``busy`` of a core) while another is idler by more than ``gap`` answers one response now and then
(at most one every ``close_every_s``) with ``Connection: close``: its client reconnects at once,
and the idler worker, waiting in ``accept``, is the likelier to take the new connection. When the
workers are equally busy, or none is busy, no connection is closed.
"""

from __future__ import annotations

import logging
import mmap
import os
import struct
import tempfile
import time

_SLOT = struct.Struct("<dd")  # share of a core, wall-clock time of the reading
SLOTS = 64


def shared_path(arbiter_pid: int | None = None) -> str:
    """The file of one server's workers (all children of the same arbiter process)."""
    folder = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()
    return os.path.join(folder, f"digits_and_signs-balance-{arbiter_pid or os.getppid()}")


class WorkerBalance:
    """One worker's side: publish its own load, read the others', decide when to close a connection."""

    def __init__(self, *, busy: float = 0.85, gap: float = 0.5, close_every_s: float = 0.05,
                 interval_s: float = 0.25, stale_s: float = 2.0, path: str | None = None):
        self.busy, self.gap, self.close_every_s = busy, gap, close_every_s
        self.interval_s, self.stale_s = interval_s, stale_s
        self.path = path
        self.index: int | None = None
        self.shedding = False  # this worker is busy and another is idle
        self.closed = 0  # connections closed to rebalance, since start
        self._map: mmap.mmap | None = None
        self._last_close = 0.0
        self._last = (time.monotonic(), time.process_time())

    def start(self, index: int) -> None:
        """Take slot ``index`` (1-based worker index); no writable shared folder: stay out of it."""
        try:
            self.attach(index)
        except OSError as exc:  # connections then stay where they landed
            logging.getLogger("bentoml.digits_and_signs").warning("digits_and_signs: no worker balance: %s", exc)

    def attach(self, index: int) -> bool:
        """Map the shared file and take slot ``index``; False when there is no slot for it."""
        if not 1 <= index <= SLOTS:
            return False
        self.path = self.path or shared_path()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < SLOTS * _SLOT.size:
                os.ftruncate(fd, SLOTS * _SLOT.size)
            self._map = mmap.mmap(fd, SLOTS * _SLOT.size)
        finally:
            os.close(fd)
        self.index = index
        _SLOT.pack_into(self._map, (index - 1) * _SLOT.size, 0.0, time.time())  # here, idle so far
        return True

    def stop(self, remove: bool = False) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
        if remove and self.path:
            try:
                os.unlink(self.path)
            except OSError:
                pass

    def observe(self, share: float, wall: float) -> None:
        """Publish this worker's share of a core and decide, from the others' fresh shares, whether
        it should hand connections over."""
        if self._map is None or self.index is None:
            return
        _SLOT.pack_into(self._map, (self.index - 1) * _SLOT.size, share, wall)
        others = []
        for slot in range(SLOTS):
            if slot == self.index - 1:
                continue
            theirs, when = _SLOT.unpack_from(self._map, slot * _SLOT.size)
            if when:  # a worker that answered nothing for stale_s published nothing: it is idle
                others.append(theirs if wall - when <= self.stale_s else 0.0)
        self.shedding = bool(others) and share >= self.busy and min(others) <= share - self.gap

    def close_this_connection(self) -> bool:
        """Whether the response being sent should carry ``Connection: close`` (rate-limited). Every
        ``interval_s`` it first publishes this worker's share of a core since the last time."""
        now = time.monotonic()
        if now - self._last[0] >= self.interval_s:
            cpu = time.process_time()
            share = (cpu - self._last[1]) / (now - self._last[0])
            self._last = (now, cpu)
            self.observe(share, time.time())
        if not self.shedding:
            return False
        if now - self._last_close < self.close_every_s:
            return False
        self._last_close = now
        self.closed += 1
        return True
