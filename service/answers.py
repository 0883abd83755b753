"""The answer to one classified image, as the API documents it.

Plain numpy and Pillow, no BentoML: the hand-written comparison servers of the benchmark build
their answers with the same function.
"""

from __future__ import annotations

import base64
import io
from typing import Sequence

import numpy as np


def answer(probabilities: np.ndarray, class_names: Sequence[str], model_tag: str, top_k: int,
           model_input: np.ndarray | None = None) -> dict:
    """``{"label", "index", "confidence", "top_k", "model"}`` (+ ``input_image`` when given the input)."""
    order = np.argsort(probabilities)[::-1][:top_k]
    best = int(order[0])
    body = {
        "label": class_names[best],
        "index": best,
        "confidence": float(probabilities[best]),
        "top_k": [{"label": class_names[i], "probability": float(probabilities[i])} for i in order],
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
