"""The BentoML model store entry: ``model.keras`` plus the metadata that serving relies on.

The metadata is the single source of truth for serving: class names in output order, the input
the model takes, and which :mod:`preprocessing` function turns an upload into that input.
"""

from __future__ import annotations

from pathlib import Path

import bentoml
import keras

MODEL_FILE = "model.keras"


def save_model(
    model: keras.Model,
    name: str,
    *,
    class_names: list[str],
    preprocessing: str,
    metrics: dict,
    training: dict,
    data_sha256: dict[str, str],
    labels: dict[str, str] | None = None,
) -> bentoml.Model:
    """Save ``model`` as a new version of ``name`` in the BentoML store (``$BENTOML_HOME``)."""
    metadata = {
        "class_names": list(class_names),
        "input": {
            "shape": [784],
            "also_accepts": [[28, 28], [28, 28, 1]],
            "dtype": "float32",
            "range": [0.0, 1.0],
            "layout": "28x28 greyscale, row-major, scaled pixel/255",
        },
        "preprocessing": preprocessing,
        "metrics": metrics,
        "training": training,
        "data_sha256": data_sha256,
        "keras_version": keras.__version__,
        "trained_with_backend": keras.backend.backend(),
    }
    with bentoml.models.create(
        name,
        labels=labels or {},
        metadata=_without_none(metadata),
        module="keras",
    ) as entry:
        model.save(Path(entry.path) / MODEL_FILE)
    return entry


def _without_none(value):
    """BentoML metadata refuses None; an unset option is simply left out."""
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_without_none(v) for v in value]
    return value


def load_model(tag: str) -> tuple[keras.Model, bentoml.Model]:
    """Load ``model.keras`` of a store entry (e.g. 'mnist_dense:latest') and return it with the entry."""
    entry = bentoml.models.get(tag)
    model = keras.saving.load_model(entry.path_of(MODEL_FILE))
    return model, entry
