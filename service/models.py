"""The model service: one batched forward pass per model, with BentoML's adaptive batching.

It asks for a GPU; Keras runs on it when the backend finds one (TensorFlow with CUDA, or
``KERAS_BACKEND=jax`` with a CUDA jaxlib) and on the CPU otherwise, with no code change.
"""

from __future__ import annotations

import bentoml
import numpy as np

from service import settings
from service.model_store import MODEL_FILE, reference

MNIST = reference("mnist")
ASL = reference("asl")

BATCHING = dict(batchable=True, batch_dim=0, max_batch_size=settings.MAX_BATCH_SIZE,
                max_latency_ms=settings.MAX_LATENCY_MS)


@bentoml.service(
    name="dense_models",
    resources={"gpu": 1},
    workers=settings.MODEL_WORKERS,
    traffic={"timeout": 30},
)
class DenseModels:
    """Holds both Keras models; each API takes a batch (n, 784) of 0-1 pixels, returns (n, classes)."""

    mnist_model = MNIST
    asl_model = ASL

    def __init__(self) -> None:
        import keras

        self.mnist = keras.saving.load_model(self.mnist_model.path_of(MODEL_FILE))
        self.asl = keras.saving.load_model(self.asl_model.path_of(MODEL_FILE))
        self.backend = keras.backend.backend()
        for model in (self.mnist, self.asl):  # trace once so the first request is not slow
            for n in (1, 8):
                model(np.zeros((n, 784), np.float32), training=False)

    @bentoml.api(**BATCHING)
    def mnist_probabilities(self, pixels: np.ndarray) -> np.ndarray:
        return np.asarray(self.mnist(pixels, training=False))

    @bentoml.api(**BATCHING)
    def asl_probabilities(self, pixels: np.ndarray) -> np.ndarray:
        return np.asarray(self.asl(pixels, training=False))
