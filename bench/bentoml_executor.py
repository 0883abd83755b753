"""The executor placement built with BentoML's own means, for ``python -m bench.transport`` only.

The HTTP service is the real one (the same app, guards, decoders and Classifiers); its forward pass
calls a second BentoML service through ``bentoml.depends``: batchable APIs (``max_batch_size``,
``max_latency_ms``: BentoML's adaptive batching over every worker's calls), ``resources={"gpu": 1}``
on that service alone, one worker. ``bentoml serve bench.bentoml_executor:DigitsAndSigns`` serves it.
The shipped service uses its own socket instead (execution/executor.py): docs/decisions.md has the
numbers of both, side by side.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import bentoml
import numpy as np
from bentoml.validators import DType, Shape

from catalog import FAMILIES
from execution import placement, runtime
from execution.forward import CompiledForward, load_model
from inference import Classifier
from preprocessing import VECTOR_LENGTH
from service.model_store import StoredModel
from service.guards import Guard
from service.service import APP, DECODER, DRAIN, GUARD, MODELS, SETTINGS, _raise_open_files_limit

Rows = Annotated[np.ndarray, Shape((-1, VECTOR_LENGTH)), DType("float32")]
BATCHING = dict(batchable=True, batch_dim=0, max_batch_size=SETTINGS.executor_batch_size,
                max_latency_ms=SETTINGS.max_latency_ms)


# BentoML's client recycles its connection pool every `max_requests` calls (100 by default), and
# calls in flight on the old pool then fail with "Server disconnected" (bentoml/BentoML#5540):
# given a pool that lives as long as the run, so that only the transport's cost is measured.
@bentoml.service(name="bentoml_model_executor", workers=1,
                 runner_connection={"max_requests": 10**9, "max_age": 1e6},
                 **({"resources": {"gpu": 1}} if placement.visible_gpus() else {}), **SETTINGS.bentoml_config())
class BentoExecutor:
    """Both models on the device, each behind a batchable BentoML API."""

    def __init__(self) -> None:
        runtime.configure(SETTINGS.tf_intra_op_threads, SETTINGS.tf_inter_op_threads)
        self.forwards = {}
        for family in FAMILIES:
            stored = StoredModel.of(family, MODELS[family.route])
            self.forwards[family.route] = CompiledForward(load_model(stored.path), SETTINGS.executor_buckets,
                                                          xla=SETTINGS.xla, name=stored.tag)

    @bentoml.api(**BATCHING)
    def mnist_forward(self, rows: Rows) -> np.ndarray:
        return self.forwards["mnist"](rows)

    @bentoml.api(**BATCHING)
    def asl_forward(self, rows: Rows) -> np.ndarray:
        return self.forwards["asl"](rows)


@bentoml.service(name="digits_and_signs", workers=SETTINGS.workers, traffic={"timeout": 30},
                 **SETTINGS.bentoml_config())
@bentoml.asgi_app(APP, path="/")
class DigitsAndSigns:
    """The real HTTP layer; forward passes through BentoML's client to :class:`BentoExecutor`."""

    mnist_model = MODELS["mnist"]
    asl_model = MODELS["asl"]
    executor = bentoml.depends(BentoExecutor)

    def __init__(self) -> None:
        DRAIN.install()
        asyncio.ensure_future(DECODER.start())
        _raise_open_files_limit()
        # the client's API methods exist once BentoML has set it up, after this: looked up per call
        calls = {"mnist": lambda rows: self.executor.to_async.mnist_forward(rows),
                 "asl": lambda rows: self.executor.to_async.asl_forward(rows)}
        self.classifiers = {}
        for family in FAMILIES:
            stored = StoredModel.of(family, MODELS[family.route])
            self.classifiers[family.route] = Classifier(stored.tag, stored.metadata, calls[family.route],
                                                        decoder=DECODER, unsure_below=SETTINGS.unsure_below)

    def __is_ready__(self) -> bool:
        return not DRAIN.draining


DigitsAndSigns.add_asgi_middleware(Guard, **GUARD)
