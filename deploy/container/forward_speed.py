"""CPU time of one forward pass of the served models, per Keras backend: what the serving image's
choice of backend (TensorFlow or JAX) costs per request. Run once per backend:

    KERAS_BACKEND=tensorflow python deploy/container/forward_speed.py
    KERAS_BACKEND=jax python deploy/container/forward_speed.py

(with $BENTOML_HOME holding mnist_dense). Prints, for batches of 1, 4 and 32 rows, the process CPU
time per call of each way the service can run the model: the service's own pass
(service.models.CompiledModel: XLA per bucket on TensorFlow, predict_on_batch on JAX), Keras'
predict_on_batch, and on JAX a jitted stateless forward pass (what a jax.jit path would cost).
TensorFlow gets one thread per op (service/models.py sets it); JAX runs with its defaults, as the
service runs it. Pin the process to one core (taskset -c 1) for numbers that compare.
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
sys.path.insert(0, os.getcwd())

import numpy as np  # noqa: E402


def cpu_ms_per_call(fn, x, seconds: float = 2.0) -> float:
    for _ in range(50):
        fn(x)
    calls, start = 0, time.process_time()
    wall_end = time.monotonic() + seconds
    while time.monotonic() < wall_end:
        for _ in range(50):
            fn(x)
        calls += 50
    return (time.process_time() - start) * 1000 / calls


def main() -> None:
    import bentoml
    import keras

    from service.models import CompiledModel
    from service.model_store import MODEL_FILE

    backend = keras.backend.backend()
    model = keras.saving.load_model(bentoml.models.get("mnist_dense:latest").path_of(MODEL_FILE))
    compiled = CompiledModel(model, "mnist_dense")
    ways = {f"service ({compiled.compiled})": compiled,
            "keras predict_on_batch": lambda x: np.asarray(model.predict_on_batch(x))}
    if backend == "jax":
        import jax

        # copies: Keras' own predict step may donate (delete) the variables' buffers
        trainable = [jax.numpy.array(v.value) for v in model.trainable_variables]
        non_trainable = [jax.numpy.array(v.value) for v in model.non_trainable_variables]

        @jax.jit
        def forward(trainable, non_trainable, x):
            return model.stateless_call(trainable, non_trainable, x, training=False)[0]

        ways["jax.jit(stateless_call)"] = lambda x: np.asarray(forward(trainable, non_trainable, x))
    print(f"keras backend: {backend}; CPU ms per call (process time)")
    print("| way | batch 1 | batch 4 | batch 32 |\n|---|---:|---:|---:|")
    for name, fn in ways.items():
        row = [cpu_ms_per_call(fn, np.random.default_rng(0).random((n, 784), np.float32)) for n in (1, 4, 32)]
        print(f"| {name} | " + " | ".join(f"{ms:.3f}" for ms in row) + " |")


if __name__ == "__main__":
    main()
