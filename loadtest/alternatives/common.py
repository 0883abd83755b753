"""What the hand-written servers share: the store lookup, their Classifier and a numpy MLP (no
bentoml import)."""

from __future__ import annotations

import io
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from catalog import FAMILIES, MODEL_FILE, ModelMetadata
from inference import Classifier
from preprocessing.vector import local_contrast
from service.settings import Settings

MAX_BATCH_FILES = Settings.max_batch_files
DEFAULT_TOP_K = Settings.default_top_k


def bentoml_home() -> Path:
    return Path(os.environ.get("BENTOML_HOME") or Path.home() / "bentoml")


@dataclass(frozen=True)
class StoredModel:
    """One store entry, read without importing bentoml: ``model.keras`` path and its metadata."""

    tag: str
    path: Path
    metadata: ModelMetadata

    def classifier(self, forward) -> Classifier:
        """This model's Classifier around ``forward`` (rows -> softmax), unsure below the service's
        threshold (``UNSURE_BELOW``), so its answers are the service's."""
        return Classifier(self.tag, self.metadata, forward, unsure_below=Settings.from_env().unsure_below)

    @classmethod
    def latest(cls, name: str, home: Path | None = None) -> "StoredModel":
        import yaml

        folder = (home or bentoml_home()) / "models" / name
        version = (folder / "latest").read_text().strip()
        meta = ModelMetadata.from_store(yaml.safe_load((folder / version / "model.yaml").read_text())["metadata"])
        return cls(f"{name}:{version}", folder / version / MODEL_FILE, meta)


def stored_models() -> dict[str, StoredModel]:
    return {f.route: StoredModel.latest(f.store_name) for f in FAMILIES}


def top_k_of(value, model: StoredModel) -> int | None:
    """``top_k`` from the form (default 3), or None when it is not a whole number in range."""
    try:
        top_k = DEFAULT_TOP_K if value is None else int(value)
    except (TypeError, ValueError):
        return None
    return top_k if 1 <= top_k <= len(model.metadata.class_names) else None


class NumpyMLP:
    """The inference graph of the course's dense classifier, in numpy: optional local contrast (the
    sign model's ``LocalContrast``) and per-image standardisation (LayerNormalization without
    scale/centre), Dense layers, softmax.

    Weights come straight from ``model.keras`` (a zip of config.json and model.weights.h5).
    """

    def __init__(self, path: str | os.PathLike):
        import h5py

        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
            weights = h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r")
        self.steps: list[tuple] = []
        dense = 0
        for layer in config["config"]["layers"]:
            kind, conf = layer["class_name"], layer["config"]
            if kind in ("InputLayer", "Reshape", "Dropout"):
                continue
            if kind == "LocalContrast":
                self.steps.append(("local_contrast", float(conf["sigma"]), float(conf["epsilon"])))
            elif kind == "LayerNormalization":
                if conf.get("center") or conf.get("scale"):
                    raise ValueError("only LayerNormalization(center=False, scale=False) is supported")
                self.steps.append(("standardize", float(conf["epsilon"])))
            elif kind == "Dense":
                group = weights["layers"]["dense" if dense == 0 else f"dense_{dense}"]["vars"]
                dense += 1
                kernel = np.asarray(group["0"], dtype=np.float32)
                bias = np.asarray(group["1"], dtype=np.float32)
                self.steps.append(("dense", kernel, bias, conf["activation"]))
            else:
                raise ValueError(f"layer {kind} is not supported by the numpy forward pass")
        weights.close()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32).reshape(len(x), -1)
        for step in self.steps:
            if step[0] == "local_contrast":
                x = local_contrast(x, step[1], step[2])
                continue
            if step[0] == "standardize":
                mean = x.mean(axis=-1, keepdims=True)
                var = x.var(axis=-1, keepdims=True)
                x = (x - mean) / np.sqrt(var + step[1])
                continue
            _, kernel, bias, activation = step
            x = x @ kernel + bias
            if activation == "relu":
                np.maximum(x, 0, out=x)
            elif activation == "softmax":
                x = np.exp(x - x.max(axis=-1, keepdims=True))
                x /= x.sum(axis=-1, keepdims=True)
            elif activation != "linear":
                raise ValueError(f"activation {activation} is not supported")
        return x
