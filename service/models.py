"""The model service: one batched forward pass per model, with BentoML's adaptive batching.

It asks for a GPU; Keras runs on it when the backend finds one (TensorFlow with CUDA, or
``KERAS_BACKEND=jax`` with a CUDA jaxlib) and on the CPU otherwise, with no code change.
"""

from __future__ import annotations

import logging

import bentoml
import numpy as np

from service import settings
from service.model_store import MODEL_FILE, reference

MNIST = reference("mnist")
ASL = reference("asl")

logger = logging.getLogger("bentoml.dense_models")

# Batches are padded up to one of these sizes, so a backend that compiles per input shape (JAX,
# XLA) compiles each once, at start-up, rather than for every new batch size under load.
BUCKETS = tuple(2**i for i in range(12) if 2**i < settings.MAX_BATCH_SIZE) + (settings.MAX_BATCH_SIZE,)


def forward(model, pixels: np.ndarray) -> np.ndarray:
    """One plain forward pass over a batch, padded to the next bucket size."""
    n = len(pixels)
    size = next((b for b in BUCKETS if b >= n), None)
    if size is None:  # a batch larger than the largest bucket: in bucket-sized slices
        return np.concatenate([forward(model, pixels[i : i + BUCKETS[-1]]) for i in range(0, n, BUCKETS[-1])])
    padded = np.zeros((size, pixels.shape[1]), np.float32)
    padded[:n] = pixels
    # predict_on_batch: one forward pass through Keras' compiled inference step (tf.function /
    # jax.jit), a third of the eager call's cost here; still the batch's only model call.
    return np.asarray(model.predict_on_batch(padded))[:n]


def _devices(backend: str) -> str:
    """Where the backend will run the model (GPU when it sees one)."""
    try:
        if backend == "jax":
            import jax

            return ", ".join(str(d) for d in jax.devices())
        if backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            return ", ".join(d.name for d in gpus) or "CPU"
    except Exception as exc:  # reporting only; never block start-up
        return f"unknown ({exc})"
    return "unknown"


BATCHING = (
    dict(batchable=True, batch_dim=0, max_batch_size=settings.MAX_BATCH_SIZE,
         max_latency_ms=settings.MAX_LATENCY_MS)
    if settings.BATCHING
    else dict(batchable=False)
)
# Shared by both services: access log and tracing, each off unless switched on (settings).
SERVICE_CONFIG = {
    **({} if settings.ACCESS_LOG else {"logging": {"access": {"enabled": False}}}),
    **({} if settings.TRACING else {"tracing": {"excluded_urls": [".*"]}}),
}


@bentoml.service(
    name="dense_models",
    resources={"gpu": 1},
    workers=settings.MODEL_WORKERS,
    traffic={"timeout": 30},
    **SERVICE_CONFIG,
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
        logger.info("DenseModels: keras backend: %s; devices: %s", self.backend, _devices(self.backend))
        for model in (self.mnist, self.asl):  # compile every bucket before the first request
            for size in BUCKETS:
                forward(model, np.zeros((size, 784), np.float32))

    @bentoml.api(**BATCHING)
    def mnist_probabilities(self, pixels: np.ndarray) -> np.ndarray:
        return forward(self.mnist, pixels)

    @bentoml.api(**BATCHING)
    def asl_probabilities(self, pixels: np.ndarray) -> np.ndarray:
        return forward(self.asl, pixels)
