"""service/balance.py: a busy worker hands keep-alive connections to an idle one, and only then."""

from __future__ import annotations

import time

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from service.balance import WorkerBalance
from service.guards import Guard


def pair(tmp_path, **options) -> tuple[WorkerBalance, WorkerBalance]:
    """Two workers' sides on one shared file, without their timers: observe() is called by hand."""
    path = str(tmp_path / "balance")
    a, b = WorkerBalance(path=path, **options), WorkerBalance(path=path, **options)
    assert a.attach(1) and b.attach(2)
    return a, b


def test_the_busy_worker_closes_now_and_then_while_the_other_is_idle(tmp_path):
    a, b = pair(tmp_path, close_every_s=0.05)
    now = time.time()
    b.observe(0.02, now)
    a.observe(0.97, now)
    b.observe(0.02, now)
    assert a.shedding and not b.shedding
    assert a.close_this_connection() is True
    assert a.close_this_connection() is False  # at most one every close_every_s
    time.sleep(0.06)
    assert a.close_this_connection() is True and a.closed == 2
    assert b.close_this_connection() is False


def test_the_share_is_published_as_the_worker_answers(tmp_path):
    a, b = pair(tmp_path, interval_s=0.0, busy=0.2, gap=0.1)  # low marks: a shared CI machine
    b.observe(0.0, time.time())
    a._last = (time.monotonic(), time.process_time())
    deadline = time.process_time() + 0.05
    while time.process_time() < deadline:  # this process busy: a's share near one core
        pass
    a.close_this_connection()
    assert a.shedding


def test_equally_busy_or_idle_workers_keep_their_connections(tmp_path):
    a, b = pair(tmp_path)
    now = time.time()
    for share_a, share_b in ((0.95, 0.9), (0.3, 0.0), (0.8, 0.1)):  # both busy; none busy; not busy enough
        b.observe(share_b, now)
        a.observe(share_a, now)
        assert not a.shedding and not a.close_this_connection(), (share_a, share_b)


def test_a_worker_that_answered_nothing_lately_counts_as_idle(tmp_path):
    a, b = pair(tmp_path, stale_s=2.0)
    b.observe(0.9, time.time() - 5)  # busy once, then no answer for 5 s: no requests, so idle
    a.observe(0.99, time.time())
    assert a.shedding


def test_the_guard_sends_connection_close_when_the_balance_says_so():
    class Always:
        def close_this_connection(self):
            return True

    app = Starlette(routes=[Route("/x", lambda request: JSONResponse({"ok": True}))])
    handed = TestClient(Guard(app, max_body_bytes=1000, body_timeout_s=1.0, balance=Always())).get("/x")
    kept = TestClient(Guard(app, max_body_bytes=1000, body_timeout_s=1.0)).get("/x")
    assert handed.status_code == 200 and handed.headers["connection"] == "close"
    assert kept.status_code == 200 and "connection" not in kept.headers
