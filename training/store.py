"""The BentoML model store entry: ``model.keras`` plus its metadata (catalog.metadata's schema).

The metadata is the single source of truth for serving: class names in output order, the input
the model takes, and which :mod:`preprocessing` function turns an upload into that input.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import bentoml
import keras

from catalog import MODEL_FILE, Family, ModelMetadata
from execution.forward import load_model as load_keras_model


def save_model(model: keras.Model, name: str, fam: Family, *, metrics: dict, training: dict,
               data_sha256: dict[str, str], labels: dict[str, str] | None = None, **extra) -> bentoml.Model:
    """Save ``model`` as a new version of ``name`` in the BentoML store (``$BENTOML_HOME``).

    ``extra`` adds metadata fields beyond the schema's own (kept in the store entry)."""
    metadata = ModelMetadata(
        class_names=list(fam.class_names), preprocessing=fam.preprocessing, metrics=metrics,
        training=training, data_sha256=data_sha256, keras_version=keras.__version__,
        trained_with_backend=keras.backend.backend(), **extra,
    )
    with bentoml.models.create(name, labels=labels or {}, metadata=metadata.to_store(), module="keras") as entry:
        model.save(Path(entry.path) / MODEL_FILE)
    return entry


def load_model(tag: str) -> tuple[keras.Model, bentoml.Model]:
    """Load ``model.keras`` of a store entry (e.g. 'mnist_dense:latest') and return it with the entry."""
    entry = bentoml.models.get(tag)
    return load_keras_model(entry.path_of(MODEL_FILE)), entry


def copy_version(tag: str, note: str) -> bentoml.Model:
    """Store the model of ``tag`` again as a new version of the same name (same weights and
    metadata, plus ``copied_from`` and ``note``): a second version to roll out without training."""
    entry = bentoml.models.get(tag)
    metadata = {**entry.info.metadata, "copied_from": str(entry.tag), "note": note}
    with bentoml.models.create(entry.tag.name, labels=dict(entry.info.labels), metadata=metadata,
                               module=entry.info.module) as copy:
        shutil.copyfile(entry.path_of(MODEL_FILE), Path(copy.path) / MODEL_FILE)
    return copy
