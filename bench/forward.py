"""CPU time of one forward pass of a served model, per Keras backend (what the image's choice of
backend costs per request). Run once per backend, pinned to one core for numbers that compare:

    KERAS_BACKEND=tensorflow taskset -c 1 python -m bench.forward
    KERAS_BACKEND=jax taskset -c 1 python -m bench.forward

(with ``$BENTOML_HOME`` holding the first catalog family's model). Prints, for batches of 1, 4 and
32 rows, the process CPU time per call of the service's own pass (``execution.forward.CompiledForward``:
XLA per bucket on TensorFlow, ``jax.jit`` per bucket on JAX) and of Keras' ``predict_on_batch``.
"""

from __future__ import annotations

import os
import time

import numpy as np


def cpu_ms_per_call(fn, x, seconds: float = 2.0) -> float:
    """Process CPU milliseconds per call of ``fn(x)``, after a warm-up."""
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
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    from execution.forward import load_model  # registers the project's own layers

    from catalog import FAMILIES
    from execution import runtime
    from execution.forward import CompiledForward
    from service.model_store import StoredModel, reference
    from service.settings import Settings

    settings = Settings.from_env()
    runtime.configure(settings.tf_intra_op_threads, settings.tf_inter_op_threads)
    family = FAMILIES[0]
    stored = StoredModel.of(family, reference(family))
    model = load_model(stored.path)
    compiled = CompiledForward(model, settings.buckets, xla=settings.xla, name=stored.tag)
    ways = {f"service ({compiled.compiled})": compiled,
            "keras predict_on_batch": lambda x: np.asarray(model.predict_on_batch(x))}
    print(f"{stored.tag}, keras backend: {keras.backend.backend()}; CPU ms per call (process time)")
    print("| way | batch 1 | batch 4 | batch 32 |\n|---|---:|---:|---:|")
    for name, fn in ways.items():
        row = [cpu_ms_per_call(fn, np.random.default_rng(0).random((n, 784), np.float32)) for n in (1, 4, 32)]
        print(f"| {name} | " + " | ".join(f"{ms:.3f}" for ms in row) + " |")


if __name__ == "__main__":
    main()
