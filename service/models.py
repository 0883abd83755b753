"""The models a worker holds: loading them, and one plain forward pass over a batch.

Keras runs on a GPU when the backend finds one (TensorFlow with CUDA, or ``KERAS_BACKEND=jax``
with a CUDA jaxlib) and on the CPU otherwise, with no code change.
"""

from __future__ import annotations

import logging
import os

import bentoml
import numpy as np

from preprocessing import VECTOR_LENGTH
from service import settings
from service.model_store import MODEL_FILE

logger = logging.getLogger("bentoml.digits_and_signs")

# Every worker process holds its own copy of the (small) models: on a shared GPU each process
# must take memory as it needs it instead of reserving the whole card at start-up.
os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
# Parallelism comes from worker processes (one per core), so TensorFlow gets one thread per
# worker: a batch-1 pass costs 0.64 ms of CPU instead of 1.0 ms (its pools woke every core for it).
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")

# Batches are padded up to one of these sizes, so a backend that compiles per input shape (JAX,
# XLA) compiles each once, at start-up, rather than for every new batch size under load.
BUCKETS = tuple(2**i for i in range(12) if 2**i < settings.MAX_BATCH_SIZE) + (settings.MAX_BATCH_SIZE,)


class CompiledModel:
    """A stored Keras model with its forward pass compiled once per bucket size; call it on an
    (n, 784) float32 batch for the (n, classes) softmax output."""

    def __init__(self, model, name: str = "model"):
        self.keras_model = model
        if settings.XLA and keras_backend() == "tensorflow":
            try:
                self._pass, self.compiled = self._xla_passes(model), "XLA"
                self._warm_up()
                return
            except Exception as exc:  # a TensorFlow build or device without XLA: Keras' own step
                logger.warning("%s: XLA compilation failed (%s); using predict_on_batch", name, exc)
        self._pass, self.compiled = self._keras_pass, "predict_on_batch"
        self._warm_up()

    def _keras_pass(self, padded: np.ndarray) -> np.ndarray:
        # predict_on_batch: Keras' compiled inference step (tf.function / jax.jit)
        return np.asarray(self.keras_model.predict_on_batch(padded))

    @staticmethod
    def _xla_passes(model):
        # One XLA-compiled function per bucket, called directly: 0.38 ms of CPU for a batch-1
        # pass here against predict_on_batch's 0.85 ms (Keras' per-call bookkeeping skipped).
        import tensorflow as tf

        call = tf.function(lambda x: model(x, training=False), jit_compile=True)
        passes = {size: call.get_concrete_function(tf.TensorSpec((size, VECTOR_LENGTH), tf.float32))
                  for size in BUCKETS}
        return lambda padded: passes[len(padded)](padded).numpy()

    def _warm_up(self) -> None:
        for size in BUCKETS:  # compile every bucket before the first request, not during it
            self(np.zeros((size, VECTOR_LENGTH), np.float32))

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        """One forward pass over a batch, padded to the next bucket size."""
        n = len(pixels)
        size = next((b for b in BUCKETS if b >= n), None)
        if size is None:  # a batch larger than the largest bucket: in bucket-sized slices
            return np.concatenate([self(pixels[i : i + BUCKETS[-1]]) for i in range(0, n, BUCKETS[-1])])
        padded = np.zeros((size, VECTOR_LENGTH), np.float32)
        padded[:n] = pixels
        return self._pass(padded)[:n]


def keras_backend() -> str:
    """The Keras backend in use: tensorflow, jax, ..."""
    import keras

    return keras.backend.backend()


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


# The batchable BentoML APIs (vectors in, probabilities out); the upload routes batch in-process
# with the same limits (service/batching.py).
BATCHING = (
    dict(batchable=True, batch_dim=0, max_batch_size=settings.MAX_BATCH_SIZE,
         max_latency_ms=settings.MAX_LATENCY_MS)
    if settings.BATCHING
    else dict(batchable=False)
)
# Access log and tracing, each off unless switched on (settings).
SERVICE_CONFIG = {
    **({} if settings.ACCESS_LOG else {"logging": {"access": {"enabled": False}}}),
    **({} if settings.TRACING else {"tracing": {"excluded_urls": [".*"]}}),
}


def load(ref: bentoml.models.BentoModel) -> CompiledModel:
    """The stored Keras model, compiled for every bucket size."""
    import keras

    return CompiledModel(keras.saving.load_model(ref.path_of(MODEL_FILE)), str(ref.tag))


def describe_backend() -> str:
    """``keras backend: <name>; devices: <where it runs>``, for the start-up log."""
    backend = keras_backend()
    return f"keras backend: {backend}; devices: {_devices(backend)}"
