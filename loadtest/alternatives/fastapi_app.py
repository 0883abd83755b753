"""The hand-written FastAPI server of the benchmark, in two flavours (see the package doc).

``make_app(call)`` builds the app around ``call(model, x) -> probabilities``; :mod:`.tutorial`
passes Keras ``model.predict``, :mod:`.careful` the direct call ``model(x, training=False)``.
"""

from __future__ import annotations

import os
from typing import Annotated, Callable

import numpy as np
from fastapi import FastAPI, File, Form, UploadFile
from fastapi.responses import JSONResponse

from loadtest.alternatives.common import MAX_BATCH_FILES, stored_models, top_k_of
from preprocessing import VECTOR_LENGTH, ImageError, image_to_vector
from inference.answers import answer

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def make_app(call: Callable[[object, np.ndarray], np.ndarray], title: str) -> FastAPI:
    import keras

    stored = stored_models()
    models = {route: keras.saving.load_model(entry.path) for route, entry in stored.items()}
    for route, model in models.items():  # the first call builds the graph: not on a request
        call(model, np.zeros((1, VECTOR_LENGTH), np.float32))
    app = FastAPI(title=title)

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.get("/readyz")
    async def ready() -> dict:
        return {"ready": True}

    def routes(route: str) -> None:
        entry, model = stored[route], models[route]

        @app.post(f"/{route}/predict")
        async def predict(image: Annotated[UploadFile, File()], top_k: Annotated[str | None, Form()] = None):
            k = top_k_of(top_k, entry)
            if k is None:
                return error(400, "bad top_k")
            try:
                x = image_to_vector(await image.read(), entry.preprocessing)
            except ImageError as exc:
                return error(exc.status_code, str(exc))
            return answer(np.asarray(call(model, x[None]))[0], entry.class_names, entry.tag, k)

        @app.post(f"/{route}/predict_batch")
        async def predict_batch(images: Annotated[list[UploadFile], File()],
                                top_k: Annotated[str | None, Form()] = None):
            k = top_k_of(top_k, entry)
            if k is None or not 1 <= len(images) <= MAX_BATCH_FILES:
                return error(400, "bad top_k or number of images")
            try:
                x = np.stack([image_to_vector(await upload.read(), entry.preprocessing) for upload in images])
            except ImageError as exc:
                return error(exc.status_code, str(exc))
            probabilities = np.asarray(call(model, x))
            return {"model": entry.tag, "predictions": [answer(p, entry.class_names, entry.tag, k) for p in probabilities]}

    for route in stored:
        routes(route)
    return app
