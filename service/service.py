"""BentoML entry point (``bentoml serve`` reads ``service.service:DigitsAndSigns`` from bentofile.yaml).

One service; each of its worker processes holds both models and does the whole request:
decode and preprocess the upload, queue the vector for the model's next batched forward pass
(service/batching.py), answer. There is no second process to call, so no HTTP hop per request.
"""

from __future__ import annotations

import gc
import logging
from typing import Annotated

import bentoml
import numpy as np
from bentoml.validators import DType, Shape
from pydantic import AfterValidator

from preprocessing import VECTOR_LENGTH

from service import settings
from service.batching import Batcher, Unbatched
from service.http_api import app
from service.model_store import ModelCard, reference
from service.models import BATCHING, SERVICE_CONFIG, describe_backend, load

logger = logging.getLogger("bentoml.digits_and_signs")

MNIST = reference("mnist")
ASL = reference("asl")


def _finite_pixels(pixels: np.ndarray) -> np.ndarray:
    if not np.isfinite(pixels).all():
        raise ValueError("pixels must be finite numbers (0 = black, 1 = white)")
    return pixels


# A batch of flattened 28x28 images, 0-1 floats: what the upload routes make of an image.
Pixels = Annotated[np.ndarray, Shape((-1, VECTOR_LENGTH)), DType("float32"), AfterValidator(_finite_pixels)]


@bentoml.service(
    name="digits_and_signs",
    resources={"gpu": 1},
    workers=settings.WORKERS,
    traffic={"timeout": 30},
    **SERVICE_CONFIG,
)
@bentoml.asgi_app(app, path="/")
class DigitsAndSigns:
    """POST /mnist/predict, /asl/predict and their predict_batch twins (multipart image uploads);
    POST /mnist_probabilities, /asl_probabilities: ready-made (n, 784) vectors, BentoML-batched."""

    mnist_model = MNIST
    asl_model = ASL

    def __init__(self) -> None:
        self.cards = {"mnist": ModelCard.of(MNIST), "asl": ModelCard.of(ASL)}
        self.mnist = load(self.mnist_model)
        self.asl = load(self.asl_model)
        logger.info("digits_and_signs: %s; forward pass: %s", describe_backend(), self.mnist.compiled)
        batcher = Batcher if settings.BATCHING else Unbatched
        self.batchers = {
            route: batcher(route, model,
                           max_batch_size=settings.MAX_BATCH_SIZE, max_latency_ms=settings.MAX_LATENCY_MS)
            for route, model in (("mnist", self.mnist), ("asl", self.asl))
        }
        # TensorFlow, Keras and BentoML leave ~0.5 M long-lived objects behind: a full garbage
        # collection walks them all (~220 ms here), stalling every request of the worker. Frozen,
        # the collector skips them; what requests allocate is still collected.
        gc.collect()
        gc.freeze()

    @bentoml.api(**BATCHING)
    def mnist_probabilities(self, pixels: Pixels) -> np.ndarray:
        """Digit probabilities (n, 10) for (n, 784) preprocessed pixels."""
        return self.mnist(pixels)

    @bentoml.api(**BATCHING)
    def asl_probabilities(self, pixels: Pixels) -> np.ndarray:
        """Letter probabilities (n, 24) for (n, 784) preprocessed pixels."""
        return self.asl(pixels)
