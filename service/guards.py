"""What stands between a client and the routes: one ASGI middleware on every route, BentoML's own
included (registered with ``Service.add_asgi_middleware``), the request metrics and the SIGTERM drain.

:class:`Guard`, per request:

* refuses headers over ``max_header_bytes`` in all (431) or a path and query over
  ``max_target_bytes`` (414);
* reads the whole body before any route sees it: over ``max_body_bytes`` (declared or streamed) is
  413; a gap of more than ``body_timeout_s`` between two chunks, or a body slower than
  ``min_body_bytes_per_s`` after its first ``body_timeout_s``, is 408 -- slow and lying clients
  (a Content-Length larger than the body sent) get an answer in about a second, not 504 after 30;
* checks JSON bodies of the routes given in ``json_checks`` (BentoML's vector APIs): over
  ``max_json_bytes`` is 413 (parsing JSON holds the event loop: ~0.4 s for 2 MB through BentoML);
  malformed, too deep, numbers out of range, wrong shape or content type are 400/415, never a 500
  from inside BentoML;
* answers every error as JSON ``{"error": ...}``: BentoML's and Starlette's plain-text 404 and 405
  (405 keeps its ``Allow``), and a 500 for an exception that escapes a route;
* counts the request in :class:`RequestMetrics` by route *template* (``/mnist/predict``,
  ``/ui/{path}``, ``unmatched``), never by raw path, so ``/metrics`` stays the same size whatever
  paths clients invent;
* while the worker drains (:class:`Drain`), answers with ``Connection: close`` so keep-alive clients
  reconnect to a worker that is not going away; and now and then when this worker is busy and
  another idle (``balance``, :class:`service.balance.WorkerBalance`), so connections spread out.

What an ASGI middleware cannot see: the header phase (uvicorn parses headers before any app runs;
BentoML 1.4.40 exposes none of uvicorn's connection limits) -- see docs/hostile.md.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time
from http import HTTPStatus
from typing import Any, Callable, Mapping, Sequence

from service.errors import error_body
from service.settings import Settings

logger = logging.getLogger("bentoml.digits_and_signs")

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_MAX_ERROR_TEXT = 300


def _kib(n: int) -> str:
    """A size for a message: in KiB when it is a whole number of them, else in bytes."""
    return f"{n // 1024} KiB" if n % 1024 == 0 else f"{n} bytes"


def json_error(status: int, message: str, headers: Mapping[str, str] | None = None) -> tuple[int, list, bytes]:
    """(status, headers, body) of the documented error, for a raw ASGI answer."""
    body = error_body(message)
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    head += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return status, head, body


class Drain:
    """The worker's shutdown state: on SIGTERM it drains (not ready, still serving) for ``seconds``,
    then hands the signal to uvicorn, which stops accepting, lets in-flight requests finish and exits."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.since: float | None = None

    @property
    def draining(self) -> bool:
        return self.since is not None

    def install(self) -> None:
        """Take over SIGTERM in this (worker) process; call it on the event loop, after uvicorn set
        its own handler (which it does before the service instance is created)."""
        loop = asyncio.get_running_loop()
        uvicorn_handler = signal.getsignal(signal.SIGTERM)

        def on_sigterm(signum, frame):
            if self.draining:  # circus signals the worker and its process group may get one too
                return
            self.since = time.monotonic()
            logger.info("digits_and_signs: SIGTERM: draining for %g s (readyz 503), then shutting down",
                        self.seconds)
            if callable(uvicorn_handler):
                loop.call_soon_threadsafe(loop.call_later, self.seconds, uvicorn_handler, signum, None)
            else:
                loop.call_soon_threadsafe(loop.call_later, self.seconds, os._exit, 0)

        signal.signal(signal.SIGTERM, on_sigterm)


class RequestMetrics:
    """``http_request_duration_seconds{route, method, status}`` and ``http_requests_in_progress``,
    in prometheus_client's multiprocess mode when ``bentoml serve`` set it up (all workers summed)."""

    def __init__(self):
        self._duration = None
        self._in_progress = None

    def _setup(self) -> None:
        from prometheus_client import Gauge, Histogram  # in the worker, after its environment is set

        self._duration = Histogram(
            "http_request_duration_seconds", "HTTP requests by route template, method and status",
            labelnames=["route", "method", "status"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0))
        self._in_progress = Gauge("http_requests_in_progress", "HTTP requests being served",
                                  multiprocess_mode="livesum")

    def started(self) -> None:
        if self._duration is None:
            self._setup()
        self._in_progress.inc()

    def finished(self, route: str, method: str, status: int, seconds: float) -> None:
        self._in_progress.dec()
        method = method if method in _METHODS else "other"
        self._duration.labels(route=route, method=method, status=str(status)).observe(seconds)

    @staticmethod
    def exposition() -> tuple[bytes, str]:
        """(body, content type) of ``GET /metrics``: every worker's metrics."""
        from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
        from prometheus_client import multiprocess

        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        else:
            registry = REGISTRY
        return generate_latest(registry), CONTENT_TYPE_LATEST


def requests_per_pass():
    """``model_batch_size{model}``: HTTP requests per forward pass, observed where the passes run
    (a worker's queue, or the model executor); one histogram across processes (multiprocess mode)."""
    from prometheus_client import Histogram  # in the process that observes, after BentoML set up metrics

    return Histogram("model_batch_size", "Requests per forward pass", labelnames=["model"],
                     buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))


def add_metrics_route(app) -> None:
    """``GET /metrics`` on ``app`` (a FastAPI app): the Prometheus exposition of every worker."""
    import anyio
    from starlette.responses import Response

    @app.get("/metrics", include_in_schema=False)
    async def _metrics() -> Response:
        body, content_type = await anyio.to_thread.run_sync(RequestMetrics.exposition)
        return Response(body, media_type=content_type)


def route_template(scope: Mapping[str, Any]) -> str:
    """The matched route's path template (set by Starlette's router), ``unmatched`` when none."""
    from starlette.routing import Mount

    route = scope.get("route")
    path = getattr(route, "path", None)
    if path is None:
        return "unmatched"
    if isinstance(route, Mount):
        return f"{path.rstrip('/')}/{{path}}"
    return path or "/"


class _BodyProblem(Exception):  # the request's head or body: answered here
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class Guard:
    """The ASGI middleware of every route (module docstring); the limits' defaults are the settings'."""

    def __init__(self, app, *, max_body_bytes: int, body_timeout_s: float,
                 json_checks: Mapping[str, Callable[[Any], str | None]] | None = None,
                 max_json_bytes: int | None = None,
                 body_limits: Sequence[tuple[Callable[[str], bool], int]] = (),
                 metrics: RequestMetrics | None = None, drain: Drain | None = None,
                 min_body_bytes_per_s: int = Settings.min_body_bytes_per_s,
                 max_header_bytes: int = Settings.max_header_bytes,
                 max_target_bytes: int = Settings.max_target_bytes, balance=None):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_limits = list(body_limits)  # (path predicate, its own limit) for routes with larger bodies
        self.max_json_bytes = min(max_json_bytes or max_body_bytes, max_body_bytes)
        self.body_timeout_s = body_timeout_s
        self.min_body_bytes_per_s = min_body_bytes_per_s
        self.max_header_bytes = max_header_bytes
        self.max_target_bytes = max_target_bytes
        self.json_checks = dict(json_checks or {})
        self.metrics = metrics
        self.drain = drain
        self.balance = balance

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        state = {"status": 0, "held": None, "held_body": [], "sent": False}
        if self.metrics:
            self.metrics.started()

        async def guarded_send(message):
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                headers = list(message.get("headers") or [])
                content_type = _header(headers, b"content-type") or b""
                if (message["status"] >= 400 and not content_type.startswith(b"application/json")
                        and scope["method"] != "HEAD"):
                    state["held"] = headers  # rewritten as JSON once its body is in
                    return
                # held until the first part of the body, then both go out back to back: a worker
                # killed between the two would leave a head without its body, an answer already
                # started that no load balancer may send again
                state["start"] = {**message, "headers": self._with_drain(headers)}
            elif message["type"] == "http.response.body" and state.get("start") is not None:
                start, state["start"] = state["start"], None
                await send(start)
                state["sent"] = True
                await send(message)
            elif message["type"] == "http.response.body" and state["held"] is not None:
                state["held_body"].append(message.get("body", b""))
                if not message.get("more_body"):
                    text = b"".join(state["held_body"]).decode(errors="replace").strip()
                    await self._send_error(send, state, state["status"],
                                           self._error_text(scope, state["status"], text, state["held"]),
                                           state["held"])
            else:
                await send(message)

        try:
            self._check_head(scope)
            body = await self._read_body(scope, receive)
            if body is not None:
                self._check_json(scope, body)
                receive = _replay(body, receive)
            await self.app(scope, receive, guarded_send)
        except _BodyProblem as problem:
            if not state["sent"]:
                await self._send_error(send, state, problem.status, str(problem), [(b"connection", b"close")])
        except _Disconnected:
            state["status"] = 499  # the client went away before its body was in (nginx's code)
        except Exception:
            logger.exception("digits_and_signs: unhandled error on %s %s", scope["method"], scope.get("path"))
            if not state["sent"]:
                await self._send_error(send, state, 500, self._error_text(scope, 500, "", []), [])
        finally:
            if self.metrics:
                route = route_template(scope)
                if route == "unmatched" and scope.get("path") in self.json_checks:
                    route = scope["path"]  # answered here, before routing
                self.metrics.finished(route, scope["method"], state["status"] or 500, time.perf_counter() - start)

    # ---- the head and the body

    def _check_head(self, scope) -> None:
        """uvicorn limits a head only while it is incomplete (16 KiB): one sent at once may be larger."""
        target = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
        if target > self.max_target_bytes:
            raise _BodyProblem(414, f"the request's path and query are longer than {self.max_target_bytes} bytes")
        if sum(len(k) + len(v) + 4 for k, v in scope.get("headers") or []) > self.max_header_bytes:
            raise _BodyProblem(431, f"the request's headers are larger than {_kib(self.max_header_bytes)} in all")

    async def _read_body(self, scope, receive) -> bytes | None:
        """The whole request body, within the size and time limits; None for a request without one."""
        headers = scope.get("headers") or []
        declared = _header(headers, b"content-length")
        if declared is None and _header(headers, b"transfer-encoding") is None:
            return None
        limit = self._limit(scope.get("path") or "")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _BodyProblem(413, self._too_large(limit))
        chunks, received = [], 0
        loop = asyncio.get_running_loop()
        start = loop.time()
        while True:
            now = loop.time()
            # the next chunk is due within body_timeout_s, and past the grace period the body
            # must keep an average of min_body_bytes_per_s
            due = min(now + self.body_timeout_s,
                      max(start + self.body_timeout_s, start + received / self.min_body_bytes_per_s))
            try:
                async with asyncio.timeout_at(due):  # a timer, not a task per chunk as wait_for makes
                    message = await receive()
            except TimeoutError:
                raise _BodyProblem(408, (
                    f"the request body did not arrive in time ({received} of "
                    f"{declared.decode() + ' declared' if declared else 'an unknown number of'} bytes): "
                    f"it must keep coming, with no gap over {self.body_timeout_s:g} s and at least "
                    f"{_kib(self.min_body_bytes_per_s)}/s")) from None
            if message["type"] == "http.disconnect":
                raise _Disconnected()
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > limit:
                raise _BodyProblem(413, self._too_large(limit))
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)

    def _limit(self, path: str) -> int:
        if path in self.json_checks:
            return self.max_json_bytes
        return next((limit for matches, limit in self.body_limits if matches(path)), self.max_body_bytes)

    @staticmethod
    def _too_large(limit: int) -> str:
        return f"the request body is larger than the limit of {limit / (1024 * 1024):.3g} MiB"

    def _check_json(self, scope, body: bytes) -> None:
        check = self.json_checks.get(scope.get("path"))
        if check is None or scope["method"] != "POST":
            return
        media = (_header(scope.get("headers") or [], b"content-type") or b"").split(b";")[0].strip().lower()
        if media not in (b"", b"application/json"):
            raise _BodyProblem(415, "send the body as JSON (Content-Type: application/json)")
        try:
            document = json.loads(body)
        except RecursionError:
            raise _BodyProblem(400, "the body is not valid JSON: nested too deeply") from None
        except ValueError as exc:  # malformed JSON, bad encoding, an integer of over 4300 digits
            raise _BodyProblem(400, f"the body is not valid JSON: {str(exc)[:200]}") from None
        problem = check(document)
        if problem:
            raise _BodyProblem(400, problem)

    # ---- the answer

    def _with_drain(self, headers: list) -> list:
        """``Connection: close`` while draining, or when the balance hands this connection over."""
        if (self.drain is not None and self.drain.draining) or (
                self.balance is not None and self.balance.close_this_connection()):
            return [(k, v) for k, v in headers if k.lower() != b"connection"] + [(b"connection", b"close")]
        return headers

    async def _send_error(self, send, state, status: int, message: str, headers: list) -> None:
        kept = [(k, v) for k, v in headers
                if k.lower() in (b"allow", b"retry-after", b"connection", b"www-authenticate")]
        status, head, body = json_error(status, message)
        state["status"], state["sent"] = status, True
        await send({"type": "http.response.start", "status": status, "headers": self._with_drain(head + kept)})
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    def _error_text(scope, status: int, text: str, headers: list) -> str:
        path = scope.get("path", "")[:200]
        method = scope.get("method", "")[:20]
        if status == 404:
            return f"no such path: {method} {path} (the API is described at /docs)"
        if status == 405:
            allowed = (_header(headers, b"allow") or b"").decode(errors="replace")
            return f"method {method} is not allowed on {path}" + (f"; allowed: {allowed}" if allowed else "")
        if status == 500:
            return "internal error; the server log has the details"
        if text and not text.lstrip().startswith("<"):
            return text[:_MAX_ERROR_TEXT]
        try:
            return HTTPStatus(status).phrase.lower()
        except ValueError:
            return "error"


class _Disconnected(Exception):
    pass


def _header(headers, name: bytes) -> bytes | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def _replay(body: bytes, receive):
    """A ``receive`` that gives the app the body read already, then waits on the client as before."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed():
        if pending:
            return pending.pop()
        return await receive()

    return replayed
