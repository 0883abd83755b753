"""The typed schema of a stored model's metadata: written by training, read by the service.

A model's BentoML store entry holds ``model.keras`` and this metadata; it is the single source of
truth for serving: the class names in output order, the input the model takes and the
preprocessing that turns an upload into that input.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

#: The Keras file inside a store entry.
MODEL_FILE = "model.keras"


class InputSpec(BaseModel):
    """What the model takes: the course's flat 784-vector of pixels scaled to 0-1."""

    shape: list[int] = [784]
    also_accepts: list[list[int]] = [[28, 28], [28, 28, 1]]
    dtype: str = "float32"
    range: list[float] = [0.0, 1.0]
    layout: str = "28x28 greyscale, row-major, scaled pixel/255"


class SplitMetrics(BaseModel):
    loss: float
    accuracy: float
    photographs: int | None = Field(default=None, description="validation held out as whole photographs: how many")
    photographs_wrong: int | None = Field(default=None, description="of those, how many had an image answered wrong")


class Calibration(BaseModel):
    """Temperature scaling fitted on the validation split: served probabilities are
    ``softmax(log(p) / temperature)`` of the model's own softmax output ``p``."""

    temperature: float = Field(gt=0)
    ece_before: float | None = Field(default=None, description="expected calibration error, test split, raw")
    ece_after: float | None = Field(default=None, description="the same with the temperature applied")


class ModelMetadata(BaseModel):
    """Everything a store entry says about its model besides the weights."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    class_names: list[str] = Field(min_length=2, description="output order")
    preprocessing: str = Field(description="id of the preprocessing function that makes an upload the input")
    input: InputSpec = InputSpec()
    metrics: dict[str, SplitMetrics] = {}
    training: dict[str, Any] = {}
    data_sha256: dict[str, str] = {}
    keras_version: str = ""
    trained_with_backend: str = ""
    calibration: Calibration | None = None

    def to_store(self) -> dict:
        """Plain values for ``bentoml.models.create(metadata=...)`` (which refuses None)."""
        return _without_none(self.model_dump(mode="json"))

    @classmethod
    def from_store(cls, metadata: dict) -> "ModelMetadata":
        """Read (and check) a store entry's metadata."""
        return cls.model_validate(metadata)


def _without_none(value):
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_without_none(v) for v in value]
    return value
