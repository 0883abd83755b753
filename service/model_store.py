"""The trained models in the BentoML store, and what their metadata says about serving them."""

from __future__ import annotations

from dataclasses import dataclass

import bentoml

MODEL_FILE = "model.keras"

# Route prefix -> (store name, the command that trains it when it is missing).
SERVED_MODELS = {
    "mnist": ("mnist_dense", "python -m training mnist"),
    "asl": ("asl_dense", "python -m training asl"),
}


class ModelNotTrained(RuntimeError):
    """A model the service needs is not in the store."""


def reference(route: str) -> bentoml.models.BentoModel:
    """The store entry served under ``/<route>/``; fails with the command that trains it."""
    name, command = SERVED_MODELS[route]
    try:
        stored = bentoml.models.get(f"{name}:latest")
    except bentoml.exceptions.NotFound:
        from bentoml._internal.configuration.containers import BentoMLContainer

        home = BentoMLContainer.bentoml_home.get()
        raise ModelNotTrained(
            f"model {name!r} is not in the BentoML model store ({home}). "
            f"Train it first: `{command}` (or `make train` for both models), then start the service again."
        ) from None
    return bentoml.models.BentoModel(str(stored.tag))


@dataclass(frozen=True)
class ModelCard:
    """What the HTTP layer needs to know about one model: all of it from the model's metadata."""

    tag: str
    class_names: tuple[str, ...]
    preprocessing: str

    @classmethod
    def of(cls, ref: bentoml.models.BentoModel) -> "ModelCard":
        meta = ref.stored.info.metadata
        return cls(str(ref.stored.tag), tuple(meta["class_names"]), meta["preprocessing"])
