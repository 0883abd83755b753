"""The numeric runtime of a process that runs forward passes, set up by one explicit call."""

from __future__ import annotations

import importlib.util
import logging
import os

logger = logging.getLogger("bentoml.digits_and_signs")


def configure(tf_intra_op_threads: int = 1, tf_inter_op_threads: int = 1) -> str:
    """Set up the Keras backend for this process; call it before anything imports Keras.

    The backend is ``KERAS_BACKEND`` when set; otherwise JAX where it is installed (its jitted
    batch-1 pass costs a third of TensorFlow's XLA one here: ``python -m bench.forward``; the
    container images serve on JAX too), else TensorFlow. Parallelism comes from processes (one
    worker per core) and the executor's pass threads, so each backend gets one thread per pass:
    TensorFlow's intra/inter-op pools (1: a batch-1 pass costs 0.64 ms of CPU instead of 1.0 ms,
    its pools woke every core for it), and XLA's CPU runtime on JAX (``XLA_FLAGS``, unless set).
    GPU memory is taken as needed, never reserved in bulk (JAX would take 75 % of the card).
    Returns ``keras backend: <name>; devices: <where it runs>`` for the start-up log.
    """
    if "KERAS_BACKEND" not in os.environ and importlib.util.find_spec("jax") is not None:
        os.environ["KERAS_BACKEND"] = "jax"
    if os.environ.get("KERAS_BACKEND") == "jax":
        os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # JAX reads it when it starts
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(tf_intra_op_threads)
        tf.config.threading.set_inter_op_parallelism_threads(tf_inter_op_threads)
        gpus = tf.config.list_physical_devices("GPU")
        for gpu in gpus:
            tf.config.experimental.set_memory_growth(gpu, True)
        devices = ", ".join(d.name for d in gpus) or "CPU"
    elif backend == "jax":
        import jax

        devices = ", ".join(str(d) for d in jax.devices())
    else:
        devices = "unknown"
    return f"keras backend: {backend}; devices: {devices}"


def device(index: int):
    """The backend's device for executor ``index`` (1-based; executors share devices round-robin
    when there are more executors than devices). None where the backend chooses by itself."""
    import keras

    if keras.backend.backend() != "jax":
        return None
    import jax

    devices = jax.devices()
    return devices[(index - 1) % len(devices)]


def host_device():
    """The host's CPU as a device of the backend (JAX), for passes too small for an accelerator."""
    import jax

    return jax.devices("cpu")[0]
