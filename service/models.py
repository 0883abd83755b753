"""The models a worker holds: loading them, and one plain forward pass over a batch.

Keras runs on a GPU when the backend finds one (TensorFlow with CUDA, or ``KERAS_BACKEND=jax``
with a CUDA jaxlib) and on the CPU otherwise, with no code change.
"""

from __future__ import annotations

import os

import bentoml
import numpy as np

from service import settings
from service.model_store import MODEL_FILE

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


def load(ref: bentoml.models.BentoModel):
    """The stored Keras model, with its forward pass compiled for every bucket size."""
    import keras

    model = keras.saving.load_model(ref.path_of(MODEL_FILE))
    for size in BUCKETS:  # before the first request, not during it
        forward(model, np.zeros((size, 784), np.float32))
    return model


def describe_backend() -> str:
    """``keras backend: <name>; devices: <where it runs>``, for the start-up log."""
    import keras

    backend = keras.backend.backend()
    return f"keras backend: {backend}; devices: {_devices(backend)}"
