"""The in-process batcher of the upload routes (execution/batching.py), without a server."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from execution.batching import Batcher, Overloaded, Unbatched


class RecordingModel:
    """A stand-in forward pass: output row i = input row i times 2; records every batch size."""

    def __init__(self, seconds: float = 0.0, fail: bool = False):
        self.seconds, self.fail, self.batches = seconds, fail, []
        self.lock = threading.Lock()

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        with self.lock:
            self.batches.append(len(pixels))
        time.sleep(self.seconds)
        if self.fail:
            raise RuntimeError("model broke")
        return pixels[:, :3] * 2


def rows(i: int, n: int = 1) -> np.ndarray:
    return np.full((n, 784), float(i), np.float32)


class Passes(list):
    """The ``on_batch`` callback: records the number of requests in every pass."""

    def __call__(self, requests: int) -> None:
        self.append(requests)


def run(coroutine):
    return asyncio.run(coroutine)


def test_one_request_alone_gets_its_own_pass_at_once():
    model = RecordingModel()
    batcher = Batcher(model, max_batch_size=8, max_latency_ms=1000)

    async def main():
        start = time.monotonic()
        out = await batcher(rows(3))
        return out, time.monotonic() - start

    out, took = run(main())
    assert model.batches == [1] and out.tolist() == [[6.0, 6.0, 6.0]]
    assert took < 0.5  # no batching window to sit out


def test_concurrent_requests_share_passes_and_get_their_own_rows_back():
    model, passes = RecordingModel(seconds=0.02), Passes()
    batcher = Batcher(model, max_batch_size=64, max_latency_ms=5000, on_batch=passes)

    async def main():
        return await asyncio.gather(*(batcher(rows(i, n=1 + i % 3)) for i in range(40)))

    outputs = run(main())
    assert sum(passes) == 40  # every request counted once in the batch histogram
    assert len(passes) == len(model.batches)
    for i, out in enumerate(outputs):
        assert out.shape == (1 + i % 3, 3) and (out == 2 * i).all()
    assert sum(model.batches) == sum(1 + i % 3 for i in range(40))
    assert len(model.batches) < 40 and max(model.batches) > 1


def test_requests_ready_in_the_same_turn_share_a_pass_and_a_later_one_gets_its_own():
    model = RecordingModel()
    batcher = Batcher(model, max_batch_size=64, max_latency_ms=1000)

    async def later():
        await asyncio.sleep(0.05)
        return await batcher(rows(9))

    async def main():
        return await asyncio.gather(*(batcher(rows(i)) for i in range(5)), later())

    outputs = run(main())
    assert model.batches == [5, 1]
    assert [int(o[0, 0]) for o in outputs] == [0, 2, 4, 6, 8, 18]


def test_batches_never_exceed_max_batch_size():
    model = RecordingModel(seconds=0.01)
    batcher = Batcher(model, max_batch_size=5, max_latency_ms=5000)

    async def main():
        return await asyncio.gather(*(batcher(rows(i, n=2)) for i in range(20)))

    run(main())
    assert max(model.batches) <= 5 and sum(model.batches) == 40


def test_requests_that_waited_past_the_budget_are_shed():
    model = RecordingModel(seconds=0.2)
    batcher = Batcher(model, max_batch_size=1, max_latency_ms=50)

    async def main():
        return await asyncio.gather(*(batcher(rows(i)) for i in range(4)), return_exceptions=True)

    results = run(main())
    assert isinstance(results[0], np.ndarray)  # the first starts at once
    assert all(isinstance(r, Overloaded) for r in results[1:])  # the rest waited 200 ms > 50 ms
    assert model.batches == [1]


def test_a_failing_pass_fails_its_requests_only():
    model = RecordingModel(fail=True)
    batcher = Batcher(model, max_batch_size=8, max_latency_ms=1000)

    async def main():
        first = await asyncio.gather(batcher(rows(1)), batcher(rows(2)), return_exceptions=True)
        model.fail = False
        return first, await batcher(rows(3))

    first, after = run(main())
    assert all(isinstance(r, RuntimeError) for r in first)
    assert after.tolist() == [[6.0, 6.0, 6.0]]


def test_unbatched_runs_one_pass_per_request():
    model = RecordingModel(seconds=0.01)
    unbatched = Unbatched(model)

    async def main():
        return await asyncio.gather(*(unbatched(rows(i)) for i in range(6)))

    outputs = run(main())
    assert model.batches == [1] * 6 and [int(o[0, 0]) for o in outputs] == [0, 2, 4, 6, 8, 10]


@pytest.mark.parametrize("kind", [Batcher, Unbatched])
def test_a_pass_of_one_request_counts_one_whatever_its_rows(kind):
    passes = Passes()
    run(kind(RecordingModel(), max_batch_size=8, max_latency_ms=1000, on_batch=passes)(rows(1, n=3)))
    assert passes == [1]


# ---- the compiled forward pass (execution/forward.py) ---------------------------------------------

@pytest.mark.parametrize("xla", [True, False])
def test_compiled_forward_gives_keras_own_output_for_any_batch_size(xla):
    """XLA or predict_on_batch, padded to buckets or sliced past the largest: the model's own answer."""
    import keras

    from execution.forward import CompiledForward
    from service.settings import Settings
    from training.config import TrainConfig
    from training.models import build_classifier, inference_model

    keras_model = inference_model(build_classifier(10, TrainConfig()))
    buckets = Settings(max_batch_size=16).buckets
    compiled = CompiledForward(keras_model, buckets, xla=xla, name="test")
    expected = {"tensorflow": "XLA", "jax": "jax.jit"}.get(keras.backend.backend(), "predict_on_batch")
    assert compiled.compiled == (expected if xla else "predict_on_batch")
    x = np.random.default_rng(0).random((buckets[-1] + 3, 784), dtype=np.float32)
    for n in (1, 3, 8, len(x)):
        out = compiled(x[:n])
        assert out.shape == (n, 10)
        np.testing.assert_allclose(out, np.asarray(keras_model(x[:n], training=False)), atol=1e-5)
