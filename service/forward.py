"""One forward pass over a batch: a stored Keras model, compiled once per batch-size bucket.

Batches are padded up to one of the settings' bucket sizes, so a backend that compiles per input
shape (XLA, JAX) compiles each once, at start-up, rather than for every new batch size under load.
Keras runs on a GPU when its backend finds one and on the CPU otherwise, with no code change.
"""

from __future__ import annotations

import logging
from typing import Callable

import numpy as np

from preprocessing import VECTOR_LENGTH

logger = logging.getLogger("bentoml.digits_and_signs")


class CompiledForward:
    """Call it on an (n, 784) float32 batch for the model's (n, classes) softmax output.

    TensorFlow: an XLA-compiled ``tf.function`` per bucket, called directly (0.38 ms of CPU for a
    batch-1 pass here against ``predict_on_batch``'s 0.85 ms: Keras' per-call bookkeeping
    skipped). JAX: ``jax.jit`` of the model's stateless call. ``xla=False``, another backend or a
    failed compilation: Keras' own ``predict_on_batch``.
    """

    def __init__(self, model, buckets: tuple[int, ...], *, xla: bool = True, name: str = "model"):
        import keras

        self.keras_model = model
        self.buckets = buckets
        backend = keras.backend.backend()
        self._pass: Callable[[np.ndarray], np.ndarray] = self._keras_pass
        self.compiled = "predict_on_batch"
        if xla and backend in ("tensorflow", "jax"):
            try:
                self._pass = self._tf_pass(model) if backend == "tensorflow" else self._jax_pass(model)
                self.compiled = "XLA" if backend == "tensorflow" else "jax.jit"
                self._warm_up()
                return
            except Exception as exc:  # a build or device without XLA: Keras' own step
                logger.warning("%s: compilation failed (%s); using predict_on_batch", name, exc)
                self._pass, self.compiled = self._keras_pass, "predict_on_batch"
        self._warm_up()

    def _keras_pass(self, padded: np.ndarray) -> np.ndarray:
        return np.asarray(self.keras_model.predict_on_batch(padded))

    def _tf_pass(self, model):
        import tensorflow as tf

        call = tf.function(lambda x: model(x, training=False), jit_compile=True)
        passes = {size: call.get_concrete_function(tf.TensorSpec((size, VECTOR_LENGTH), tf.float32))
                  for size in self.buckets}
        return lambda padded: passes[len(padded)](padded).numpy()

    @staticmethod
    def _jax_pass(model):
        import jax

        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]
        call = jax.jit(lambda t, n, x: model.stateless_call(t, n, x, training=False)[0])
        return lambda padded: np.asarray(call(trainable, non_trainable, padded))

    def _warm_up(self) -> None:
        for size in self.buckets:  # compile every bucket before the first request, not during it
            self(np.zeros((size, VECTOR_LENGTH), np.float32))

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        """One forward pass over a batch, padded to the next bucket size."""
        n = len(pixels)
        size = next((b for b in self.buckets if b >= n), None)
        if size is None:  # a batch larger than the largest bucket: in bucket-sized slices
            step = self.buckets[-1]
            return np.concatenate([self(pixels[i : i + step]) for i in range(0, n, step)])
        padded = np.zeros((size, VECTOR_LENGTH), np.float32)
        padded[:n] = pixels
        return self._pass(padded)[:n]


def load_model(path: str):
    """A ``model.keras`` file, loaded with Keras."""
    import keras

    return keras.saving.load_model(path)
