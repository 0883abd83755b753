"""Ray Serve peer: the project's stem behind a Ray Serve application, as Ray's docs set one up.

Two deployments in one application (the docs' model-composition pattern):

* ``Ingress``: a FastAPI app wrapped with ``@serve.ingress``; it parses the multipart form, decodes
  and preprocesses each upload (``Classifier.prepare``) and builds the answers. It calls the model
  through a ``DeploymentHandle``.
* ``Model``: both networks (``NumpyMLP``), one ``@serve.batch`` method per network, so the rows of
  concurrent requests share one forward pass. Batches count rows (``batch_size_fn``); the ingress
  cuts a request with more rows than ``max_batch_size`` into chunks. The batch knobs arrive as the
  deployment's ``user_config`` and are applied in ``reconfigure`` with ``set_max_batch_size`` and
  ``set_batch_wait_timeout_s``, as the batching guide shows.

One replica of each, ``num_cpus=1`` each: the machine has 2 cores, and Serve's own HTTP proxy
(ProxyActor, a uvicorn process that forwards every request to the ingress replica) and controller
need CPU too. One model replica keeps a single batch queue per network, so batches can fill; more
ingress replicas would only share the same 2 cores with the proxy. ``max_ongoing_requests`` (5 by
default) is raised to twice ``max_batch_size`` on both deployments: the batching guide's warning is
that a replica never sees a full batch when fewer requests than ``max_batch_size`` may be in flight
to it, and twice lets one batch fill while the previous one runs.

Ray is started by this process (``ray.init(address="local", include_dashboard=False)``, on
127.0.0.1), so gcs_server, raylet and every worker (ServeController, ProxyActor, the replicas) are in
its process tree; SIGTERM runs ``serve.shutdown()`` and ``ray.shutdown()`` (replicas' graceful stop
shortened to 2 s). Logs stay in Ray's session folder: no access log, warnings only. The HTTP port is
Serve's own proxy (``serve.start(http_options=...)``); with ``include_dashboard=False`` Ray still runs
a minimal dashboard process and its agents.

Run from the repo root::

    <venv>/bin/python -m loadtest.peers.ray_serve --port P --max-batch-size 10 --max-wait-ms 10

Routes: GET /readyz, POST /{mnist,asl}/predict and /predict_batch (the floor's contract), GET /stats
({"passes", "rows"} from the model deployment).

Docs followed:
https://docs.ray.io/en/latest/serve/advanced-guides/dyn-req-batch.html
https://docs.ray.io/en/latest/serve/api/doc/ray.serve.batch.html
https://docs.ray.io/en/latest/serve/http-guide.html
https://docs.ray.io/en/latest/serve/api/doc/ray.serve.ingress.html
https://docs.ray.io/en/latest/serve/model_composition.html
https://docs.ray.io/en/latest/serve/configure-serve-deployment.html
https://docs.ray.io/en/latest/serve/advanced-guides/performance.html
https://docs.ray.io/en/latest/serve/api/doc/ray.serve.schema.LoggingConfig.html
"""

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import ray
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from ray import serve
from ray.serve.handle import DeploymentHandle
from ray.serve.schema import LoggingConfig

from loadtest.alternatives.common import MAX_BATCH_FILES, NumpyMLP, stored_models, top_k_of
from preprocessing import ImageError

REPO = Path(__file__).resolve().parents[2]
DOCUMENTED_MAX_BATCH_SIZE = 10
DOCUMENTED_WAIT_S = 0.01
# One core each; a replica's graceful stop polls every 2 s for 20 s by default, too slow for SIGTERM.
REPLICA_OPTIONS = {"ray_actor_options": {"num_cpus": 1}, "graceful_shutdown_wait_loop_s": 0.5,
                   "graceful_shutdown_timeout_s": 2}

app = FastAPI()


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _rows_in(batch: list[np.ndarray]) -> int:
    return sum(len(rows) for rows in batch)


@serve.deployment(**REPLICA_OPTIONS)
class Model:
    """Both networks; the rows sent by concurrent calls of :meth:`forward` join in one pass."""

    def __init__(self):
        self.networks = {route: NumpyMLP(entry.path) for route, entry in stored_models().items()}
        self.batched = {"mnist": self.forward_mnist, "asl": self.forward_asl}
        self.passes = 0
        self.rows = 0

    def reconfigure(self, config: dict) -> None:
        for method in self.batched.values():
            method.set_max_batch_size(config["max_batch_size"])
            method.set_batch_wait_timeout_s(config["batch_wait_timeout_s"])

    def _run(self, route: str, batch: list[np.ndarray]) -> list[np.ndarray]:
        rows = np.concatenate(batch)
        self.passes += 1
        self.rows += len(rows)
        output = self.networks[route](rows)
        ends = np.cumsum([len(part) for part in batch])
        return np.split(output, ends[:-1])

    @serve.batch(max_batch_size=DOCUMENTED_MAX_BATCH_SIZE, batch_wait_timeout_s=DOCUMENTED_WAIT_S,
                 batch_size_fn=_rows_in)
    async def forward_mnist(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        return self._run("mnist", batch)

    @serve.batch(max_batch_size=DOCUMENTED_MAX_BATCH_SIZE, batch_wait_timeout_s=DOCUMENTED_WAIT_S,
                 batch_size_fn=_rows_in)
    async def forward_asl(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        return self._run("asl", batch)

    async def forward(self, route: str, rows: np.ndarray) -> np.ndarray:
        """Softmax rows of ``route``'s network for (n, 784) ``rows`` (n <= max_batch_size)."""
        return await self.batched[route](rows)

    def stats(self) -> dict:
        return {"passes": self.passes, "rows": self.rows}


@serve.deployment(**REPLICA_OPTIONS)
@serve.ingress(app)
class Ingress:
    """The HTTP contract: multipart parsing, decoding and answers here, the forward pass in Model."""

    def __init__(self, model: DeploymentHandle, max_batch_size: int):
        self.model = model
        self.max_batch_size = max_batch_size
        self.stored = stored_models()
        self.classifiers = {route: entry.classifier(self._forward_of(route))
                            for route, entry in self.stored.items()}

    def _forward_of(self, route: str):
        async def forward(rows: np.ndarray) -> np.ndarray:
            size = self.max_batch_size
            chunks = [rows[start:start + size] for start in range(0, len(rows), size)]
            parts = await asyncio.gather(*(self.model.forward.remote(route, chunk) for chunk in chunks))
            return np.concatenate(parts)

        return forward

    async def _answer(self, route: str, request: Request, batch: bool) -> JSONResponse:
        entry, classifier = self.stored.get(route), self.classifiers.get(route)
        if entry is None:
            return _error(404, f"no model {route!r}")
        try:
            form = await request.form(max_files=MAX_BATCH_FILES + 1)
        except Exception:
            return _error(400, "the request body is not valid multipart/form-data")
        uploads = form.getlist("images" if batch else "image")
        k = top_k_of(form.get("top_k"), entry)
        if k is None or not 1 <= len(uploads) <= (MAX_BATCH_FILES if batch else 1) or isinstance(uploads[0], str):
            return _error(400, "bad field, top_k or number of images")
        data = [await upload.read() for upload in uploads]
        try:
            prepared = [classifier.prepare(one) for one in data]
        except ImageError as exc:
            return _error(exc.status_code, str(exc))
        found = [one.vector for one in prepared if one.found]
        probabilities = iter(await classifier.aprobabilities(np.stack(found)) if found else ())
        answers = [classifier.answer(one, next(probabilities) if one.found else None, k) for one in prepared]
        if batch:
            return JSONResponse({"model": entry.tag, "predictions": answers})
        return JSONResponse(answers[0])

    @app.post("/{route}/predict")
    async def predict(self, route: str, request: Request) -> JSONResponse:
        return await self._answer(route, request, batch=False)

    @app.post("/{route}/predict_batch")
    async def predict_batch(self, route: str, request: Request) -> JSONResponse:
        return await self._answer(route, request, batch=True)

    @app.get("/readyz")
    async def readyz(self) -> dict:
        return {"ready": True}

    @app.get("/stats")
    async def stats(self) -> dict:
        return await self.model.stats.remote()


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-batch-size", type=int, default=DOCUMENTED_MAX_BATCH_SIZE,
                        help="most rows in one forward pass (@serve.batch max_batch_size, counted in rows)")
    parser.add_argument("--max-wait-ms", type=float, default=DOCUMENTED_WAIT_S * 1000,
                        help="@serve.batch batch_wait_timeout_s, in milliseconds")
    return parser.parse_args(argv)


def _stop(signum, frame):
    for each in (signal.SIGTERM, signal.SIGINT):
        signal.signal(each, signal.SIG_IGN)
    raise SystemExit(0)


def _catch_stop_signals() -> None:
    for each in (signal.SIGTERM, signal.SIGINT):
        signal.signal(each, _stop)


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    _catch_stop_signals()
    # Ray's workers start elsewhere: they find the stem through an absolute PYTHONPATH.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    quiet = LoggingConfig(log_level="WARNING", enable_access_log=False)
    in_flight = 2 * args.max_batch_size
    try:
        # A cluster of its own, on the loopback, without the dashboard and with a small object store.
        ray.init(address="local", _node_ip_address="127.0.0.1", include_dashboard=False,
                 logging_level=logging.WARNING, log_to_driver=False, object_store_memory=128 * 1024 ** 2)
        _catch_stop_signals()  # again: ray.init installs its own fatal handler for SIGTERM
        logging.getLogger("ray.serve").setLevel(logging.WARNING)
        serve.start(http_options={"host": "127.0.0.1", "port": args.port}, logging_config=quiet)
        model = Model.options(max_ongoing_requests=in_flight, user_config={
            "max_batch_size": args.max_batch_size, "batch_wait_timeout_s": args.max_wait_ms / 1000})
        ingress = Ingress.options(max_ongoing_requests=in_flight)
        serve.run(ingress.bind(model.bind(), args.max_batch_size), name="peer", route_prefix="/",
                  logging_config=quiet)
        print(f"ray serve peer ready on 127.0.0.1:{args.port}", file=sys.stderr, flush=True)
        while True:
            time.sleep(3600)
    finally:
        if ray.is_initialized():
            try:
                serve.shutdown()
            finally:
                ray.shutdown()


if __name__ == "__main__":
    main()
