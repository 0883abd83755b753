"""Peer: BentoML written the quickstart way, with its adaptive batching.

What a BentoML user writes first, following BentoML's docs and nothing from the project's own
service (``service/``): ``@bentoml.service`` classes, ``@bentoml.api`` methods with ``route=``, the
upload as a ``pathlib.Path`` (BentoML's file input type), and adaptive batching
(``batchable=True``, ``max_batch_size``, ``max_latency_ms``).

A batchable API takes exactly one parameter (the docs' "Handle multiple parameters"), so the
image cannot sit next to ``top_k`` in it. The documented way is the one taken: a wrapper service
for the single requests that depends on (``bentoml.depends``) an inner service with the batchable
methods. Here the wrapper (:class:`DenseClassifiers`) decodes and preprocesses each upload with the
project's stem (per-request work in the API method, as the docs' distributed-services example does
with its image) and sends the rows, an ``np.ndarray`` (n, 784), to the inner
:class:`DenseModels`, whose batchable ``mnist``/``asl`` (``batch_dim=0``) get the rows of concurrent
requests stacked by BentoML's adaptive batcher into one forward pass. ``top_k`` never needs to
enter the batch. A ``predict_batch`` request sends its n rows as one job (BentoML counts
``max_batch_size`` in rows for arrays and splits a job that would overflow a batch).

Start (from the repo root, main venv): ``QUICKSTART_MAX_BATCH_SIZE=N QUICKSTART_MAX_LATENCY_MS=W
/work/main/.venv/bin/bentoml serve loadtest.peers.bentoml_quickstart:DenseClassifiers --host
127.0.0.1 --port P``; ``bentoml serve`` has no batching flags, so the batch settings come from those
environment variables (defaults 32 and 1000: the adaptive-batching page's example). Readiness:
BentoML's ``/readyz``.

Errors: a bad upload sets the answer's status through ``bentoml.Context`` and returns
``{"error": ...}`` (BentoML answers a raised ``InvalidArgument`` with ``[{"error": ...}]``, a list);
a missing field or a ``top_k`` that is not a number is BentoML's own 400 validation answer
(``{"error": ..., "detail": [...]}``). BentoML itself answers 500 to a body that is not multipart,
to a file sent under another field name and to text in the file field (it tries to download it as
a URL); left as BentoML does it.

One deviation from the plain quickstart: ``runner_connection`` on the inner service (see the
comment there), without which 5-10 % of requests fail under concurrent load in BentoML 1.4.40.

``/stats``: a FastAPI app mounted on the wrapper (``bentoml.mount_asgi_app``) asks the inner
service, which counts its forward passes and rows (one worker). BentoML's own ``/metrics`` has the
histogram ``bentoml_service_adaptive_batch_size`` (requests, not rows, per batch; labels
``method_name="mnist"|"asl"``).

Docs followed:
https://docs.bentoml.com/en/latest/get-started/adaptive-batching.html
https://docs.bentoml.com/en/latest/build-with-bentoml/services.html
https://docs.bentoml.com/en/latest/build-with-bentoml/distributed-services.html
https://docs.bentoml.com/en/latest/build-with-bentoml/asgi.html
https://docs.bentoml.com/en/latest/build-with-bentoml/error-handling.html
https://github.com/bentoml/BentoML/issues/5540 (the runner_connection workaround)
(the metric's name and the error bodies: BentoML 1.4.40's _bentoml_impl/server/app.py)
"""

from __future__ import annotations

import os
from pathlib import Path

import bentoml
import numpy as np
from fastapi import FastAPI

from loadtest.alternatives.common import MAX_BATCH_FILES, NumpyMLP, stored_models, top_k_of
from preprocessing import ImageError

MAX_BATCH_SIZE = int(os.environ.get("QUICKSTART_MAX_BATCH_SIZE", "32"))
MAX_LATENCY_MS = int(os.environ.get("QUICKSTART_MAX_LATENCY_MS", "1000"))
QUIET = {"access": {"enabled": False}}  # no per-request access log
BATCHING = {"batchable": True, "batch_dim": 0, "max_batch_size": MAX_BATCH_SIZE, "max_latency_ms": MAX_LATENCY_MS}


# BentoML >= 1.4.31 replaces the client session to a dependency every runner_connection.max_requests
# (default 100) calls, closing the connections of calls still in flight: under concurrent load
# ~5-10 % of requests fail with "Server disconnected" (bentoml/BentoML#5540). Set out of reach.
@bentoml.service(logging=QUIET, runner_connection={"max_requests": 2**31, "max_age": 1e9})
class DenseModels:
    """The two networks; each batchable method gets the stacked rows of concurrent requests."""

    def __init__(self) -> None:
        self.models = {route: NumpyMLP(entry.path) for route, entry in stored_models().items()}
        self.passes = 0
        self.rows = 0

    def _forward(self, route: str, rows: np.ndarray) -> np.ndarray:
        self.passes += 1
        self.rows += len(rows)
        return self.models[route](rows)

    @bentoml.api(**BATCHING)
    def mnist(self, rows: np.ndarray) -> np.ndarray:
        return self._forward("mnist", rows)

    @bentoml.api(**BATCHING)
    def asl(self, rows: np.ndarray) -> np.ndarray:
        return self._forward("asl", rows)

    @bentoml.api
    def stats(self) -> dict:
        return {"passes": self.passes, "rows": self.rows}


stats_app = FastAPI()


class Refused(Exception):
    """A bad upload or field: its status and message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status

    def answer(self, ctx: bentoml.Context) -> dict:
        ctx.response.status_code = self.status
        return {"error": str(self)}


@bentoml.service(logging=QUIET)
@bentoml.mount_asgi_app(stats_app, path="/")
class DenseClassifiers:
    """The HTTP routes: decode and preprocess each upload here, the forward pass in DenseModels."""

    models = bentoml.depends(DenseModels)

    def __init__(self) -> None:
        self.entries = stored_models()
        self.classifiers = {route: entry.classifier(self._forward_of(route)) for route, entry in self.entries.items()}

    def _forward_of(self, route: str):
        async def forward(rows: np.ndarray) -> np.ndarray:
            return await getattr(self.models.to_async, route)(rows)

        return forward

    async def _answers(self, route: str, uploads: list[Path], top_k: int) -> list[dict]:
        """The answers for ``uploads``, their found rows in one call of the batchable method.
        Raises Refused for a bad ``top_k`` or image."""
        classifier = self.classifiers[route]
        k = top_k_of(top_k, self.entries[route])
        if k is None:
            raise Refused(400, "bad field, top_k or number of images")
        try:
            prepared = [classifier.prepare(path.read_bytes()) for path in uploads]
        except ImageError as exc:
            raise Refused(exc.status_code, str(exc)) from None
        found = [p.vector for p in prepared if p.found]
        probabilities = iter(await classifier.aprobabilities(np.stack(found)) if found else ())
        return [classifier.answer(p, next(probabilities) if p.found else None, k) for p in prepared]

    async def _predict(self, route: str, image: Path, top_k: int, ctx: bentoml.Context) -> dict:
        try:
            return (await self._answers(route, [image], top_k))[0]
        except Refused as refused:
            return refused.answer(ctx)

    async def _predict_batch(self, route: str, images: list[Path], top_k: int, ctx: bentoml.Context) -> dict:
        try:
            if not 1 <= len(images) <= MAX_BATCH_FILES:
                raise Refused(400, "bad field, top_k or number of images")
            return {"model": self.entries[route].tag, "predictions": await self._answers(route, images, top_k)}
        except Refused as refused:
            return refused.answer(ctx)

    @bentoml.api(route="/mnist/predict")
    async def mnist_predict(self, image: Path, ctx: bentoml.Context, top_k: int = 3) -> dict:
        return await self._predict("mnist", image, top_k, ctx)

    @bentoml.api(route="/mnist/predict_batch")
    async def mnist_predict_batch(self, images: list[Path], ctx: bentoml.Context, top_k: int = 3) -> dict:
        return await self._predict_batch("mnist", images, top_k, ctx)

    @bentoml.api(route="/asl/predict")
    async def asl_predict(self, image: Path, ctx: bentoml.Context, top_k: int = 3) -> dict:
        return await self._predict("asl", image, top_k, ctx)

    @bentoml.api(route="/asl/predict_batch")
    async def asl_predict_batch(self, images: list[Path], ctx: bentoml.Context, top_k: int = 3) -> dict:
        return await self._predict_batch("asl", images, top_k, ctx)

    @stats_app.get("/stats")
    async def stats(self) -> dict:
        return await self.models.to_async.stats()
