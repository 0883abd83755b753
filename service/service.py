"""BentoML entry point (``bentoml serve`` reads ``service.service:DigitsAndSigns`` from bentofile.yaml).

One service; each of its worker processes holds every model of the catalog and does the whole
request: decode and preprocess the upload, queue the vector for the model's next batched forward
pass (service/batching.py), answer. The HTTP routes are the FastAPI app of service/api.py; costly
uploads are decoded off the event loop (service/decoding.py: threads, processes); every route, BentoML's
own included, is behind service/guards.py's middleware, and SIGTERM drains before the worker exits.

Importing this module reads the settings and declares the service; it loads nothing. The models
are resolved, loaded and compiled when a worker creates the service instance.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import resource
from typing import Annotated, Any

import bentoml
import numpy as np
from bentoml.validators import DType, Shape
from pydantic import AfterValidator

from catalog import FAMILIES, Family
from preprocessing import VECTOR_LENGTH
from service import runtime
from service.api import create_app
from service.decoding import DecodeLimits, UploadDecoder
from service.guards import Drain, Guard, RequestMetrics, add_metrics_route
from service.model_store import StoredModel, reference
from service.ready import ready_line
from service.served import ServedModel
from service.settings import Settings
from service.web_ui import add_openapi_route

logger = logging.getLogger("bentoml.digits_and_signs")

SETTINGS = Settings.from_env()
# One of each per worker process (each imports this module).
DECODER = UploadDecoder(DecodeLimits.from_settings(SETTINGS))
DRAIN = Drain(SETTINGS.drain_seconds)
METRICS = RequestMetrics()


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


class DigitsAndSigns:
    """POST /<route>/predict and /<route>/predict_batch for every family (multipart image uploads);
    POST /<route>_probabilities: ready-made (n, 784) vectors, BentoML-batched (calibrated
    probabilities, like every answer)."""

    def __init__(self) -> None:
        DRAIN.install()  # SIGTERM: /readyz 503 for DRAIN_SECONDS, then uvicorn's graceful shutdown
        asyncio.ensure_future(DECODER.start())
        _raise_open_files_limit()
        backend = runtime.configure(SETTINGS)
        from prometheus_client import Histogram  # in the worker, after BentoML set up its metrics

        sizes = Histogram("model_batch_size", "Requests per forward pass of the upload routes",
                          labelnames=["model"], buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
        self.served: dict[str, ServedModel] = {}
        for family in FAMILIES:
            stored = StoredModel.of(family, getattr(type(self), _model_attribute(family)))
            self.served[family.route] = ServedModel.load(
                family, stored, SETTINGS, on_batch=sizes.labels(model=family.route).observe)
        compiled = {route: served.forward.compiled for route, served in self.served.items()}
        logger.info("digits_and_signs: %s; forward pass: %s", backend, compiled)
        # TensorFlow, Keras and BentoML leave ~0.5 M long-lived objects behind: a full garbage
        # collection walks them all (~220 ms here), stalling every request of the worker. Frozen,
        # the collector skips them; what requests allocate is still collected.
        gc.collect()
        gc.freeze()
        if bentoml.server_context.worker_index in (None, 1):  # once, from the first worker
            logger.info(ready_line())

    def __is_ready__(self) -> bool:
        """BentoML's readiness hook (/readyz): not ready while draining before shutdown."""
        return not DRAIN.draining

    @bentoml.on_shutdown
    async def _stop_decoders(self) -> None:
        await DECODER.aclose()


def _raise_open_files_limit() -> None:
    """Open-file limit to its hard maximum: each idle or slow connection holds a descriptor, and
    uvicorn bounds neither their number nor the time a client may take to send its headers."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _model_attribute(family: Family) -> str:
    return f"{family.route}_model"


def _probabilities_api(family: Family):
    """``POST /<route>_probabilities``: the family's forward pass as a BentoML (batchable) API."""

    def probabilities(self, pixels: Pixels) -> np.ndarray:
        return self.served[family.route].probabilities(pixels)

    probabilities.__name__ = probabilities.__qualname__ = f"{family.route}_probabilities"
    probabilities.__doc__ = (f"Class probabilities (n, classes) of {family.classifies} "
                             f"for (n, {VECTOR_LENGTH}) preprocessed pixels: calibrated, "
                             "the same numbers as the predict routes give.")
    if SETTINGS.batching:
        options = dict(batchable=True, batch_dim=0, max_batch_size=SETTINGS.max_batch_size,
                       max_latency_ms=SETTINGS.max_latency_ms)
    else:
        options = dict(batchable=False)
    return bentoml.api(**options)(probabilities)


# BentoML finds a service's models and APIs among its class attributes: one of each per family
# (``mnist_model``, ``mnist_probabilities``, ...), so that `bentoml build` packages every model.
for _family in FAMILIES:
    setattr(DigitsAndSigns, _model_attribute(_family), reference(_family))
    setattr(DigitsAndSigns, f"{_family.route}_probabilities", _probabilities_api(_family))

APP = create_app(SETTINGS, decoder=DECODER)
add_metrics_route(APP)
add_openapi_route(APP, lambda: DigitsAndSigns.openapi_spec.asdict())
DigitsAndSigns = bentoml.service(
    name="digits_and_signs",
    resources={"gpu": 1},
    workers=SETTINGS.workers,
    traffic={"timeout": 30},
    **SETTINGS.bentoml_config(),
)(bentoml.asgi_app(APP, path="/")(DigitsAndSigns))
# On every route, BentoML's own included: body limit and timeouts, JSON errors, metrics, drain.
DigitsAndSigns.add_asgi_middleware(
    Guard, max_body_bytes=SETTINGS.max_body_bytes, body_timeout_s=SETTINGS.body_timeout_ms / 1000,
    json_checks={f"/{family.route}_probabilities": pixels_problem for family in FAMILIES},
    max_json_bytes=SETTINGS.max_batch_size * VECTOR_LENGTH * 32,  # 32 characters a number at most
    metrics=METRICS, drain=DRAIN)
