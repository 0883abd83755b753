"""BentoML entry point (``bentoml serve`` reads ``service.service:DigitsAndSigns`` from bentofile.yaml).

The HTTP workers of :class:`DigitsAndSigns` handle requests: decode and preprocess the upload
(costly ones off the event loop, service/decoding.py), queue the vector for a batched forward pass,
answer (service/api.py: one :class:`~inference.Classifier` per family does the work). Where the
forward passes run is the placement (``PLACEMENT``, execution/placement.py): in each worker, the
CPU default, or in one model executor per GPU (service/model_executor.py), which this service then
depends on. Every route, BentoML's own included, is behind service/guards.py's middleware, and
SIGTERM drains before a worker exits.

Importing this module reads the settings, decides the placement and declares the services; it
loads nothing. The models are resolved, loaded and compiled when a worker (or the executor)
creates its service instance.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import resource
from typing import Annotated, Any

import bentoml
import numpy as np
from bentoml.validators import DType, Shape
from pydantic import AfterValidator

from catalog import FAMILIES
from execution import placement
from execution.client import ExecutorClient, socket_path
from preprocessing import VECTOR_LENGTH
from service.api import create_app
from service.decoding import DecodeLimits, UploadDecoder
from service.balance import WorkerBalance
from service.guards import Drain, Guard, RequestMetrics, add_metrics_route, requests_per_pass
from service.models import load_classifiers, pinned_references
from service.open_inference import is_infer_path
from service.ready import ready_line
from service.settings import Settings
from service.web_ui import add_openapi_route

logger = logging.getLogger("bentoml.digits_and_signs")

SETTINGS = Settings.from_env()
# Decided once, in BentoML's arbiter (the first process to import this), and inherited by every
# worker it starts, so that all of them agree.
PLACEMENT = os.environ["PLACEMENT"] = placement.resolve(SETTINGS.placement)
MODELS = pinned_references()
# One of each per worker process (each imports this module).
DECODER = UploadDecoder(DecodeLimits.from_settings(SETTINGS))
DRAIN = Drain(SETTINGS.drain_seconds)
BALANCE = WorkerBalance() if SETTINGS.rebalance else None
METRICS = RequestMetrics()

if PLACEMENT == placement.EXECUTOR:
    from service.model_executor import ModelExecutor


def _finite_pixels(pixels: np.ndarray) -> np.ndarray:
    if not np.isfinite(pixels).all():
        raise ValueError("pixels must be finite numbers (0 = black, 1 = white)")
    return pixels


# A batch of flattened 28x28 images, 0-1 floats: what the upload routes make of an image.
Pixels = Annotated[np.ndarray, Shape((-1, VECTOR_LENGTH)), DType("float32"), AfterValidator(_finite_pixels)]
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def pixels_problem(body: Any) -> str | None:
    """What is wrong with a ``/<route>_probabilities`` JSON body, in words (None: nothing); checked
    by the Guard before BentoML parses it, whose own parsing answers 500 to some of these."""
    usage = f'the body must be {{"pixels": [[{VECTOR_LENGTH} numbers 0-1], ...]}}'
    if not isinstance(body, dict) or "pixels" not in body:
        return usage
    rows = body["pixels"]
    if not isinstance(rows, list) or not rows:
        return f"pixels must be a non-empty list of rows; {usage}"
    if len(rows) > SETTINGS.max_batch_size:
        return f"send at most {SETTINGS.max_batch_size} rows per request (MAX_BATCH_SIZE), got {len(rows)}"
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != VECTOR_LENGTH:
            return f"pixels row {i} must be a list of {VECTOR_LENGTH} numbers"
    try:
        values = np.asarray(rows)
    except (TypeError, ValueError, OverflowError):
        values = None
    if values is None or values.dtype.kind not in "iuf":  # strings, objects, integers past 64 bits
        return "pixels must be numbers (0 = black, 1 = white)"
    if not (np.abs(values.astype(np.float64)) <= _FLOAT32_MAX).all():  # also NaN and infinity
        return "pixels must be finite numbers within float32 range (0 = black, 1 = white)"
    return None


def probabilities_api(route: str):
    """``POST /<route>_probabilities``: a family's calibrated probabilities for ready-made vectors, as
    a BentoML API (batchable: BentoML's own adaptive batching, before the service's own queue)."""
    fam = next(f for f in FAMILIES if f.route == route)

    async def probabilities(self, pixels: Pixels) -> np.ndarray:
        return await self.classifiers[route].aprobabilities(pixels)

    probabilities.__name__ = probabilities.__qualname__ = f"{route}_probabilities"
    probabilities.__doc__ = (f"Class probabilities (n, classes) of {fam.classifies} for (n, {VECTOR_LENGTH}) "
                             "preprocessed pixels: calibrated, the same numbers as the predict routes give.")
    if SETTINGS.batching:
        return bentoml.api(batchable=True, batch_dim=0, max_batch_size=SETTINGS.max_batch_size,
                           max_latency_ms=SETTINGS.max_latency_ms)(probabilities)
    return bentoml.api(probabilities)


APP = create_app(SETTINGS)
add_metrics_route(APP)


# With an executor, readiness is its socket (``__is_ready__``: it listens once its models are
# compiled); BentoML's own probe of the executor's HTTP port held /readyz up to 5 s while it started.
@bentoml.service(name="digits_and_signs", workers=SETTINGS.workers, traffic={"timeout": 30},
                 **({"runner_probe": {"enabled": False}} if PLACEMENT == placement.EXECUTOR else {}),
                 **SETTINGS.bentoml_config())
@bentoml.asgi_app(APP, path="/")
class DigitsAndSigns:
    """The upload routes ``POST /<route>/predict`` and ``/<route>/predict_batch`` and the Open
    Inference Protocol ``/v2/...`` (the mounted app, service/api.py), the vector APIs
    ``POST /<route>_probabilities``, the page ``/ui/`` and the API reference ``/docs``."""

    # one store entry and one vector API per catalog family (tests/test_catalog.py checks them all)
    mnist_model = MODELS["mnist"]
    asl_model = MODELS["asl"]
    mnist_probabilities = probabilities_api("mnist")
    asl_probabilities = probabilities_api("asl")
    if PLACEMENT == placement.EXECUTOR:
        executor = bentoml.depends(ModelExecutor)  # started, given the GPUs and respawned by BentoML

    def __init__(self) -> None:
        DRAIN.install()  # SIGTERM: /readyz 503 for DRAIN_SECONDS, then uvicorn's graceful shutdown
        if BALANCE is not None:
            BALANCE.start(bentoml.server_context.worker_index or 1)
        asyncio.ensure_future(DECODER.start())
        _raise_open_files_limit()
        sizes = requests_per_pass()
        self.executor_client = None
        if PLACEMENT == placement.EXECUTOR:
            worker = bentoml.server_context.worker_index or 1
            self.executor_client = ExecutorClient(
                socket_path((worker - 1) % placement.executors() + 1),
                answer_timeout_s=(SETTINGS.max_latency_ms + SETTINGS.executor_timeout_ms) / 1000,
                connect_wait_s=SETTINGS.executor_connect_wait_ms / 1000)
            self.executor_client.start()
        self.classifiers, where = load_classifiers(
            SETTINGS, MODELS, DECODER, where=PLACEMENT, executor=self.executor_client,
            on_batch=lambda route: sizes.labels(model=route).observe)
        logger.info("digits_and_signs: %s", where)
        # TensorFlow, Keras and BentoML leave ~0.5 M long-lived objects behind: a full garbage
        # collection walks them all (~220 ms here), stalling every request of the worker. Frozen,
        # the collector skips them; what requests allocate is still collected.
        gc.collect()
        gc.freeze()
        if bentoml.server_context.worker_index in (None, 1):  # once, from the first worker
            logger.info(ready_line())

    def __is_ready__(self) -> bool:
        """BentoML's readiness hook (/readyz): not while draining before shutdown, nor while the
        model executor is away (starting, or restarting after it died)."""
        return not DRAIN.draining and (self.executor_client is None or self.executor_client.ready)

    @bentoml.on_shutdown
    async def _stop(self) -> None:
        await DECODER.aclose()
        if BALANCE is not None:
            logger.info("digits_and_signs: %d keep-alive connections handed to idler workers", BALANCE.closed)
            BALANCE.stop(remove=bentoml.server_context.worker_index in (None, 1))
        if self.executor_client is not None:
            await self.executor_client.aclose()


def _raise_open_files_limit() -> None:
    """Open-file limit to its hard maximum: each idle or slow connection holds a descriptor, and
    uvicorn bounds neither their number nor the time a client may take to send its headers."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


add_openapi_route(APP, lambda: DigitsAndSigns.openapi_spec.asdict())
# On every route, BentoML's own included: body limit and timeouts, JSON errors, metrics, drain.
GUARD = dict(max_body_bytes=SETTINGS.max_body_bytes, body_timeout_s=SETTINGS.body_timeout_ms / 1000,
             json_checks={f"/{family.route}_probabilities": pixels_problem for family in FAMILIES},
             max_json_bytes=SETTINGS.max_json_bytes, body_limits=[(is_infer_path, SETTINGS.max_infer_bytes)],
             min_body_bytes_per_s=SETTINGS.min_body_bytes_per_s, max_header_bytes=SETTINGS.max_header_bytes,
             max_target_bytes=SETTINGS.max_target_bytes, metrics=METRICS, drain=DRAIN, balance=BALANCE)
DigitsAndSigns.add_asgi_middleware(Guard, **GUARD)
