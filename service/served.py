"""One served model family in a worker: its store entry, compiled forward pass and batch queue."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from catalog import Family, ModelMetadata
from service.batching import Batcher, Overloaded, Unbatched
from service.forward import CompiledForward, load_model
from service.model_store import StoredModel
from service.settings import Settings

__all__ = ["Overloaded", "ServedModel"]


@dataclass
class ServedModel:
    """What the HTTP layer calls: ``await served(rows)`` gives the model's output for (n, 784) rows,
    computed in a batch with whatever else is waiting; the metadata says how to read it."""

    family: Family
    tag: str
    metadata: ModelMetadata
    forward: CompiledForward
    batched: Callable

    @classmethod
    def load(cls, family: Family, stored: StoredModel, settings: Settings,
             on_batch: Callable[[int], None] = lambda requests: None) -> "ServedModel":
        """Load and compile ``stored`` and put it behind a batch queue (or none: ``BATCHING=off``)."""
        forward = CompiledForward(load_model(stored.path), settings.buckets, xla=settings.xla, name=stored.tag)
        queue = Batcher if settings.batching else Unbatched
        batched = queue(forward, max_batch_size=settings.max_batch_size,
                        max_latency_ms=settings.max_latency_ms, on_batch=on_batch)
        return cls(family, stored.tag, stored.metadata, forward, batched)

    async def __call__(self, rows: np.ndarray) -> np.ndarray:
        return await self.batched(rows)

    @property
    def class_names(self) -> list[str]:
        return self.metadata.class_names

    @property
    def preprocessing(self) -> str:
        return self.metadata.preprocessing
