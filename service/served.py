"""One served model family in a worker: its store entry, compiled forward pass and batch queue.

Every probability the service serves is calibrated: the model's softmax output with the temperature
of its metadata applied (``service.answers.calibrate``; no calibration stored: temperature 1), once
per forward pass, on the whole batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from catalog import Family, ModelMetadata
from service.answers import calibrate
from service.batching import Batcher, Overloaded, Unbatched
from service.forward import CompiledForward, load_model
from service.model_store import StoredModel
from service.settings import Settings

__all__ = ["Overloaded", "ServedModel"]


@dataclass
class ServedModel:
    """What the HTTP layer calls: ``await served(rows)`` gives the calibrated probabilities for
    (n, 784) rows, computed in a batch with whatever else is waiting; the metadata says how to
    read them."""

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
        temperature = temperature_of(stored.metadata)
        queue = Batcher if settings.batching else Unbatched
        batched = queue(lambda rows: calibrate(forward(rows), temperature), max_batch_size=settings.max_batch_size,
                        max_latency_ms=settings.max_latency_ms, on_batch=on_batch)
        return cls(family, stored.tag, stored.metadata, forward, batched)

    async def __call__(self, rows: np.ndarray) -> np.ndarray:
        return await self.batched(rows)

    def probabilities(self, rows: np.ndarray) -> np.ndarray:
        """Calibrated probabilities for (n, 784) rows, in one forward pass of their own (no queue)."""
        return calibrate(self.forward(rows), self.temperature)

    @property
    def temperature(self) -> float:
        """The temperature of the model's calibration (1 when its metadata has none)."""
        return temperature_of(self.metadata)

    @property
    def class_names(self) -> list[str]:
        return self.metadata.class_names

    @property
    def preprocessing(self) -> str:
        return self.metadata.preprocessing


def temperature_of(metadata: ModelMetadata) -> float:
    """The temperature of a model's calibration; 1 (no change) for a model stored without one."""
    return metadata.calibration.temperature if metadata.calibration is not None else 1.0
