"""The trained models in the BentoML store: their references, and what their metadata says."""

from __future__ import annotations

import os
from dataclasses import dataclass

import bentoml

from catalog import FAMILIES, MODEL_FILE, Family, ModelMetadata


class ModelNotTrained(bentoml.exceptions.NotFound):
    """A model the service needs is not in the store."""


class CatalogModel(bentoml.models.BentoModel):
    """A family's model in the store; when it is missing, resolving it (BentoML does so before
    the workers start) fails with the command that trains it."""

    def resolve(self, base_path=None):
        if self.stored is None:
            missing = [f for f in FAMILIES if CatalogModel(f.model_tag).stored is None] or [
                f for f in FAMILIES if f.store_name == self.tag.name]
            home = os.environ.get("BENTOML_HOME") or os.path.join("~", "bentoml")
            names = ", ".join(repr(f.store_name) for f in missing) or repr(self.tag.name)
            commands = "; ".join(f"`{f.train_command}`" for f in missing)
            raise ModelNotTrained(
                f"not in the BentoML model store ({home}): {names}. Train first: {commands} "
                "(or `make train` for every model), then start the service again."
            )
        return super().resolve(base_path)


def reference(family: Family, tag: str | None = None) -> bentoml.models.BentoModel:
    """The store entry a family is served from: ``tag``, else its newest version (resolved when the
    service starts, not at import)."""
    return CatalogModel(tag or family.model_tag)


@dataclass(frozen=True)
class StoredModel:
    """One resolved store entry: its exact tag, the path of ``model.keras`` and its metadata."""

    tag: str
    path: str
    metadata: ModelMetadata

    @classmethod
    def of(cls, family: Family, ref: bentoml.models.BentoModel) -> "StoredModel":
        """The entry ``ref`` points at; ModelNotTrained names the command that trains it."""
        stored = ref.resolve()
        return cls(str(stored.tag), stored.path_of(MODEL_FILE), ModelMetadata.from_store(stored.info.metadata))
