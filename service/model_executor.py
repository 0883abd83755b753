"""The model executor as a BentoML service (``PLACEMENT=executor``): one worker per GPU.

The HTTP service depends on it (``bentoml.depends``), so ``bentoml serve`` starts it beside the
HTTP workers, gives it the GPUs (``resources``: BentoML sets ``CUDA_VISIBLE_DEVICES``), respawns it
when it dies, and ``/readyz`` of the HTTP service reports it. Its worker ``i`` puts the models on
GPU ``i`` and serves them on its socket (``execution.executor``); the HTTP workers are spread over
the executors. It answers no HTTP API of its own: the rows travel on the socket, which costs a
fraction of a BentoML call per request (docs/decisions.md, "Model execution").
"""

from __future__ import annotations

import asyncio
import logging
import os

import bentoml

from catalog import FAMILIES
from execution import placement, runtime
from execution.client import EXECUTOR_SERVICE, socket_path
from execution.executor import ExecutorServer
from execution.forward import ROW_DTYPES, CompiledForward, load_model
from service.guards import Drain, requests_per_pass
from service.model_store import StoredModel
from service.models import pinned_references
from service.settings import Settings

logger = logging.getLogger("bentoml.digits_and_signs")

SETTINGS = Settings.from_env()
MODELS = pinned_references()  # the versions the HTTP workers answer with
GPUS = placement.visible_gpus()
# SIGTERM: the HTTP workers drain for DRAIN_SECONDS and then finish what is in flight, which may
# still need a pass: the executor outlasts them.
DRAIN = Drain(SETTINGS.drain_seconds + 2)
# Buckets compiled (and run once, on zeros) at once: a few, so that the warm-up's transient device
# memory stays a few of the largest batches (51 MB of rows each at 16384).
COMPILE_THREADS = min(4, os.cpu_count() or 1)


@bentoml.service(
    name=EXECUTOR_SERVICE,
    workers=placement.executors(),
    **({"resources": {"gpu": GPUS}} if GPUS else {}),
    **SETTINGS.bentoml_config(),
)
class ModelExecutor:
    """Every family's model on one device, pooling the rows of every HTTP worker into shared passes."""

    def __init__(self) -> None:
        DRAIN.install()
        index = bentoml.server_context.worker_index or 1
        backend = runtime.configure(SETTINGS.tf_intra_op_threads, SETTINGS.tf_inter_op_threads)
        device = runtime.device(index)
        sizes = requests_per_pass()
        # small passes on the host's CPU when the device is a GPU (execution/executor.py says why)
        host = runtime.host_device() if getattr(device, "platform", "cpu") != "cpu" else None
        forwards, small = [], []
        for family in FAMILIES:
            stored = StoredModel.of(family, MODELS[family.route])
            model = load_model(stored.path)
            forwards.append(CompiledForward(model, SETTINGS.executor_buckets, xla=SETTINGS.xla, name=stored.tag,
                                            device=device, warm=ROW_DTYPES, compile_threads=COMPILE_THREADS))
            if host is not None and SETTINGS.executor_cpu_rows:
                small.append(CompiledForward(model, SETTINGS.executor_cpu_buckets, xla=SETTINGS.xla,
                                             name=stored.tag, device=host, warm=ROW_DTYPES))
        observers = [sizes.labels(model=family.route).observe for family in FAMILIES]
        self.server = ExecutorServer(forwards, small=small or None, small_rows=SETTINGS.executor_cpu_rows,
                                     max_latency_s=SETTINGS.max_latency_ms / 1000, passes=SETTINGS.executor_passes,
                                     on_pass=lambda model, requests: observers[model](requests))
        self._serving = asyncio.ensure_future(self.server.serve(socket_path(index)))
        logger.info("digits_and_signs: model executor %d: %s; on %s", index, backend, device or "the default device")

    def __is_ready__(self) -> bool:
        """Ready once the models are compiled and the socket listens; not while draining."""
        return self.server.listening and not DRAIN.draining

    @bentoml.on_shutdown
    async def _stop(self) -> None:
        await self.server.aclose()
