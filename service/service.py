"""BentoML entry point (``bentoml serve`` reads ``service.service:DigitsAndSigns`` from bentofile.yaml).

One service; each of its worker processes holds every model of the catalog and does the whole
request: decode and preprocess the upload, queue the vector for the model's next batched forward
pass (service/batching.py), answer. The HTTP routes are the FastAPI app of service/api.py.

Importing this module reads the settings and declares the service; it loads nothing. The models
are resolved, loaded and compiled when a worker creates the service instance.
"""

from __future__ import annotations

import gc
import logging
from typing import Annotated

import bentoml
import numpy as np
from bentoml.validators import DType, Shape
from pydantic import AfterValidator

from catalog import FAMILIES, Family
from preprocessing import VECTOR_LENGTH
from service import runtime
from service.api import create_app
from service.model_store import StoredModel, reference
from service.ready import ready_line
from service.served import ServedModel
from service.settings import Settings

logger = logging.getLogger("bentoml.digits_and_signs")

SETTINGS = Settings.from_env()


def _finite_pixels(pixels: np.ndarray) -> np.ndarray:
    if not np.isfinite(pixels).all():
        raise ValueError("pixels must be finite numbers (0 = black, 1 = white)")
    return pixels


# A batch of flattened 28x28 images, 0-1 floats: what the upload routes make of an image.
Pixels = Annotated[np.ndarray, Shape((-1, VECTOR_LENGTH)), DType("float32"), AfterValidator(_finite_pixels)]


class DigitsAndSigns:
    """POST /<route>/predict and /<route>/predict_batch for every family (multipart image uploads);
    POST /<route>_probabilities: ready-made (n, 784) vectors, BentoML-batched."""

    def __init__(self) -> None:
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


def _model_attribute(family: Family) -> str:
    return f"{family.route}_model"


def _probabilities_api(family: Family):
    """``POST /<route>_probabilities``: the family's forward pass as a BentoML (batchable) API."""

    def probabilities(self, pixels: Pixels) -> np.ndarray:
        return self.served[family.route].forward(pixels)

    probabilities.__name__ = probabilities.__qualname__ = f"{family.route}_probabilities"
    probabilities.__doc__ = (f"Class probabilities (n, classes) of {family.classifies} "
                             f"for (n, {VECTOR_LENGTH}) preprocessed pixels.")
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

DigitsAndSigns = bentoml.service(
    name="digits_and_signs",
    resources={"gpu": 1},
    workers=SETTINGS.workers,
    traffic={"timeout": 30},
    **SETTINGS.bentoml_config(),
)(bentoml.asgi_app(create_app(SETTINGS), path="/")(DigitsAndSigns))
