"""The served models of one HTTP worker: a :class:`~inference.Classifier` per catalog family, whose
forward pass is the in-worker batch queue or the model executor (``PLACEMENT``)."""

from __future__ import annotations

import functools
import json
import os
from typing import Callable

from catalog import FAMILIES
from execution import placement, runtime
from execution.batching import Batcher, Unbatched
from execution.client import ExecutorClient
from execution.forward import CompiledForward, load_model
from inference import Classifier
from service.model_store import StoredModel, reference
from service.settings import Settings

#: The exact model versions this server serves, resolved by BentoML's arbiter when it imports the
#: service and inherited by every worker and executor it starts, so that all of them serve the
#: same versions even when the store gets a new one while they run.
PINNED_ENV = "DIGITS_AND_SIGNS_MODELS"


def pinned_references() -> dict[str, object]:
    """route -> the store reference each family is served from (its exact version once pinned).

    Only the processes ``bentoml serve`` starts (they have its ``BENTOML_RUNNER_MAP``) take the
    pin from their environment; any other process resolves the store itself, whatever an earlier
    process that imported the service left in the environment it passed on."""
    inherited = "BENTOML_RUNNER_MAP" in os.environ
    pinned = json.loads(os.environ.get(PINNED_ENV) or "{}") if inherited else {}
    if not pinned:
        for family in FAMILIES:
            stored = reference(family).stored
            if stored is not None:
                pinned[family.route] = str(stored.tag)
        if len(pinned) == len(FAMILIES):
            os.environ[PINNED_ENV] = json.dumps(pinned)
    return {family.route: reference(family, pinned.get(family.route)) for family in FAMILIES}


def load_classifiers(settings: Settings, references: dict, decoder, *, where: str,
                     executor: ExecutorClient | None = None,
                     on_batch: Callable[[str], Callable[[int], None]] = lambda route: (lambda requests: None),
                     ) -> tuple[dict[str, Classifier], str]:
    """The worker's classifiers, and a line for the start-up log saying where their passes run.

    ``where == "worker"``: each model loaded and compiled here, behind this worker's batch queue
    (``BATCHING=off``: a pass per request). ``"executor"``: the model stays in the executor;
    nothing here imports Keras or touches a GPU, only the models' metadata is read."""
    stored = {family.route: StoredModel.of(family, references[family.route]) for family in FAMILIES}
    if where == placement.EXECUTOR:
        forwards = {f.route: functools.partial(executor.run, i) for i, f in enumerate(FAMILIES)}
        line = f"forward passes in the model executor ({executor.path})"
    else:
        line = runtime.configure(settings.tf_intra_op_threads, settings.tf_inter_op_threads)
        forwards, compiled = {}, {}
        for family in FAMILIES:
            entry = stored[family.route]
            forward = CompiledForward(load_model(entry.path), settings.buckets, xla=settings.xla, name=entry.tag)
            queue = Batcher if settings.batching else Unbatched
            forwards[family.route] = queue(forward, max_batch_size=settings.max_batch_size,
                                           max_latency_ms=settings.max_latency_ms, on_batch=on_batch(family.route))
            compiled[family.route] = forward.compiled
        line += f"; forward passes in this worker: {compiled}"
    classifiers = {route: Classifier(entry.tag, entry.metadata, forwards[route], decoder=decoder,
                                     unsure_below=settings.unsure_below) for route, entry in stored.items()}
    return classifiers, line
