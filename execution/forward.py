"""One forward pass over a batch: a stored Keras model, compiled once per batch-size bucket.

Batches are padded up to one of the settings' bucket sizes, so a backend that compiles per input
shape (XLA, JAX) compiles each once, at start-up, rather than for every new batch size under load.
Rows come as float32 pixels in 0..1 (what the upload routes make of an image) or as uint8 0..255
(the bulk route's compact tensors): on JAX the uint8 rows are scaled inside the compiled pass, on
the device, so a GPU receives a quarter of the bytes. Keras runs on a GPU when its backend finds
one and on the CPU otherwise, with no code change.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

import numpy as np

from preprocessing import VECTOR_LENGTH

logger = logging.getLogger("bentoml.digits_and_signs")

#: The row types a forward pass takes: float32 pixels in 0..1, or uint8 pixels 0..255.
ROW_DTYPES = (np.dtype(np.float32), np.dtype(np.uint8))


class CompiledForward:
    """Call it on (n, 784) float32 or uint8 rows for the model's (n, classes) softmax output.

    TensorFlow: an XLA-compiled ``tf.function`` per bucket, called directly (0.38 ms of CPU for a
    batch-1 pass here against ``predict_on_batch``'s 0.85 ms: Keras' per-call bookkeeping
    skipped). JAX: ``jax.jit`` of the model's stateless call, its weights on ``device`` (the
    backend's default device when None). ``xla=False``, another backend or a failed compilation:
    Keras' own ``predict_on_batch``. ``warm``: the row types compiled for every bucket before the
    first call (the others compile when first seen), in ``compile_threads`` threads.
    """

    def __init__(self, model, buckets: Sequence[int], *, xla: bool = True, name: str = "model", device=None,
                 warm: Sequence[np.dtype] = (np.float32,), compile_threads: int = 1):
        import keras

        self.keras_model = model
        self.buckets = tuple(sorted(buckets))
        backend = keras.backend.backend()
        self._pass: Callable[[np.ndarray], np.ndarray] = self._keras_pass
        self.compiled = "predict_on_batch"
        if xla and backend in ("tensorflow", "jax"):
            try:
                self._pass = self._tf_pass(model) if backend == "tensorflow" else self._jax_pass(model, device)
                self.compiled = "XLA" if backend == "tensorflow" else "jax.jit"
                self._warm_up(warm, compile_threads)
                return
            except Exception as exc:  # a build or device without XLA: Keras' own step
                logger.warning("%s: compilation failed (%s); using predict_on_batch", name, exc)
                self._pass, self.compiled = self._keras_pass, "predict_on_batch"
        self._warm_up(warm, compile_threads)

    @property
    def max_rows(self) -> int:
        """The largest bucket: a longer batch runs in slices of this many rows."""
        return self.buckets[-1]

    def bucket(self, n: int) -> int | None:
        """The bucket a batch of ``n`` rows is padded to (None: longer than the largest)."""
        return next((b for b in self.buckets if b >= n), None)

    def _keras_pass(self, padded: np.ndarray) -> np.ndarray:
        return np.asarray(self.keras_model.predict_on_batch(_as_float(padded)))

    def _tf_pass(self, model):
        import tensorflow as tf

        call = tf.function(lambda x: model(x, training=False), jit_compile=True)
        passes: dict[int, Callable] = {}

        def run(padded: np.ndarray) -> np.ndarray:
            size = len(padded)
            if size not in passes:
                passes[size] = call.get_concrete_function(tf.TensorSpec((size, VECTOR_LENGTH), tf.float32))
            return passes[size](_as_float(padded)).numpy()

        return run

    @staticmethod
    def _jax_pass(model, device):
        import jax
        import jax.numpy as jnp

        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]
        if device is not None and device != jax.devices()[0]:
            # weights committed to the device: the pass runs there, and the numpy rows follow them
            # (a device_put of the rows per call cost 60 % more CPU than the pass itself)
            trainable, non_trainable = jax.device_put((trainable, non_trainable), device)

        def forward(t, n, x):
            if x.dtype == jnp.uint8:  # scaled on the device: a quarter of the bytes travel
                x = x.astype(jnp.float32) / jnp.float32(255)
            return model.stateless_call(t, n, x, training=False)[0]

        call = jax.jit(forward)
        return lambda padded: np.asarray(call(trainable, non_trainable, padded))

    def _warm_up(self, dtypes: Sequence[np.dtype], threads: int) -> None:
        """Compile every bucket for every row type in ``dtypes`` before the first request."""
        shapes = [(size, np.dtype(dtype)) for dtype in dtypes for size in self.buckets]
        if threads <= 1:
            for size, dtype in shapes:
                self.run_padded(np.zeros((size, VECTOR_LENGTH), dtype))
            return
        with ThreadPoolExecutor(threads, thread_name_prefix="compile") as pool:
            list(pool.map(lambda shape: self.run_padded(np.zeros((shape[0], VECTOR_LENGTH), shape[1])), shapes))

    def run_padded(self, padded: np.ndarray) -> np.ndarray:
        """One pass over rows already padded to a bucket size (the executor assembles them so)."""
        return self._pass(padded)

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        """One forward pass over a batch, padded to the next bucket size."""
        n = len(pixels)
        size = self.bucket(n)
        if size is None:  # a batch larger than the largest bucket: in bucket-sized slices
            step = self.max_rows
            return np.concatenate([self(pixels[i : i + step]) for i in range(0, n, step)])
        if size == n:
            return self._pass(np.ascontiguousarray(pixels))
        padded = np.zeros((size, VECTOR_LENGTH), pixels.dtype)
        padded[:n] = pixels
        return self._pass(padded)[:n]


def _as_float(rows: np.ndarray) -> np.ndarray:
    """float32 pixels in 0..1 from either row type."""
    if rows.dtype == np.uint8:
        return rows.astype(np.float32) / np.float32(255)
    return rows


def load_model(path: str):
    """A ``model.keras`` file, loaded with Keras (the project's own layers registered first)."""
    import keras

    import execution.layers  # noqa: F401  (registers LocalContrast)

    return keras.saving.load_model(path)
