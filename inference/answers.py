"""The answer to one classified image, as the API documents it.

Plain numpy and Pillow, no BentoML: :class:`inference.Classifier` builds every answer with these
functions, for the service, the benchmarks and training's evaluations alike.

Every answer has ``found`` and ``unsure``. ``found: false`` (nothing to classify: a blank page, no
ink, no hand) comes with ``label``, ``index`` and ``confidence`` null, an empty ``top_k`` and a
``reason``; the model does not run for it. ``unsure: true`` means "do not take the label as the
answer": the calibrated confidence is below the service's threshold (``UNSURE_BELOW``), or
nothing was found. The label, the best guess, is still given when something was found.
"""

from __future__ import annotations

import base64
import io
from typing import Sequence

import numpy as np


def answer(probabilities: np.ndarray, class_names: Sequence[str], model_tag: str, top_k: int,
           model_input: np.ndarray | None = None, *, unsure_below: float = 0.0) -> dict:
    """The answer for an image the model saw: ``probabilities`` are its (calibrated) output.

    ``{"found": true, "unsure", "label", "index", "confidence", "top_k", "reason", "model"}``
    (+ ``input_image`` when given the input); ``unsure`` when ``confidence < unsure_below``, and
    then ``reason`` says so (else it is null).
    """
    order = np.argsort(probabilities)[::-1][:top_k]
    best = int(order[0])
    confidence = float(probabilities[best])
    unsure = confidence < unsure_below
    body = {
        "found": True,
        "unsure": unsure,
        "label": class_names[best],
        "index": best,
        "confidence": confidence,
        "top_k": [{"label": class_names[i], "probability": float(probabilities[i])} for i in order],
        "reason": (f"the model is not sure: its confidence {confidence:.2f} is below {unsure_below:.2f}"
                   if unsure else None),
        "model": model_tag,
    }
    if model_input is not None:
        body["input_image"] = input_image_url(model_input)
    return body


def not_found(reason: str, model_tag: str, model_input: np.ndarray | None = None) -> dict:
    """The answer for an image with nothing to classify (the model did not run): no label."""
    body = {
        "found": False,
        "unsure": True,
        "label": None,
        "index": None,
        "confidence": None,
        "top_k": [],
        "reason": reason,
        "model": model_tag,
    }
    if model_input is not None:
        body["input_image"] = input_image_url(model_input)
    return body


def input_image_url(vector: np.ndarray) -> str:
    """The model's input as a 28x28 greyscale PNG data URL (white = 1.0)."""
    from PIL import Image

    buffer = io.BytesIO()
    pixels = np.clip(np.rint(vector.reshape(28, 28) * 255), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
