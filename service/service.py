"""BentoML entry point (``bentoml serve`` reads ``service.service:DigitsAndSigns`` from bentofile.yaml).

Two services: this HTTP front, which decodes and preprocesses uploads in its own worker(s), and
:class:`~service.models.DenseModels`, which batches the forward passes (and holds the GPU).
"""

from __future__ import annotations

import bentoml

from service import settings
from service.http_api import app
from service.model_store import ModelCard
from service.models import ASL, MNIST, SERVICE_CONFIG, DenseModels


@bentoml.service(
    name="digits_and_signs",
    workers=settings.API_WORKERS,
    traffic={"timeout": 30},
    **SERVICE_CONFIG,
)
@bentoml.asgi_app(app, path="/")
class DigitsAndSigns:
    """POST /mnist/predict, /asl/predict and their predict_batch twins (multipart image uploads)."""

    models = bentoml.depends(DenseModels)

    def __init__(self) -> None:
        self.cards = {"mnist": ModelCard.of(MNIST), "asl": ModelCard.of(ASL)}
