"""The hand-written FastAPI server of the benchmark, in two flavours (see the package doc).

``make_app(call)`` builds the app around ``call(model, x) -> probabilities``, the forward pass of
each family's Classifier; :mod:`.tutorial` passes Keras ``model.predict``, :mod:`.careful` the
direct call ``model(x, training=False)``.
"""

from __future__ import annotations

import functools
import os
from typing import Annotated, Callable

import numpy as np
from fastapi import FastAPI, File, Form, UploadFile
from fastapi.responses import JSONResponse

from loadtest.alternatives.common import MAX_BATCH_FILES, stored_models, top_k_of
from preprocessing import VECTOR_LENGTH, ImageError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def make_app(call: Callable[[object, np.ndarray], np.ndarray], title: str) -> FastAPI:
    from execution.forward import load_model  # registers the project's own layers

    stored = stored_models()
    models = {route: load_model(entry.path) for route, entry in stored.items()}
    for route, model in models.items():  # the first call builds the graph: not on a request
        call(model, np.zeros((1, VECTOR_LENGTH), np.float32))
    classifiers = {route: entry.classifier(functools.partial(call, models[route])) for route, entry in stored.items()}
    app = FastAPI(title=title)

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.get("/readyz")
    async def ready() -> dict:
        return {"ready": True}

    def routes(route: str) -> None:
        entry, classifier = stored[route], classifiers[route]

        @app.post(f"/{route}/predict")
        async def predict(image: Annotated[UploadFile, File()], top_k: Annotated[str | None, Form()] = None):
            k = top_k_of(top_k, entry)
            if k is None:
                return error(400, "bad top_k")
            data = await image.read()
            try:
                return classifier.predict([data], k)[0]
            except ImageError as exc:
                return error(exc.status_code, str(exc))

        @app.post(f"/{route}/predict_batch")
        async def predict_batch(images: Annotated[list[UploadFile], File()],
                                top_k: Annotated[str | None, Form()] = None):
            k = top_k_of(top_k, entry)
            if k is None or not 1 <= len(images) <= MAX_BATCH_FILES:
                return error(400, "bad top_k or number of images")
            uploads = [await upload.read() for upload in images]
            try:
                return {"model": entry.tag, "predictions": classifier.predict(uploads, k)}
            except ImageError as exc:
                return error(exc.status_code, str(exc))

    for route in stored:
        routes(route)
    return app
