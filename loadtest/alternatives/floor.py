"""(5) The floor: a minimal Starlette app, the same Classifier, a numpy forward pass.

No validation framework, no TensorFlow: ``request.form()`` and a :class:`inference.Classifier`
around :class:`~loadtest.alternatives.common.NumpyMLP` with the store's weights. Run it with one
uvicorn worker: what one Python HTTP process can do with this work per request.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from loadtest.alternatives.common import MAX_BATCH_FILES, NumpyMLP, stored_models, top_k_of
from preprocessing import ImageError

STORED = stored_models()
CLASSIFIERS = {route: entry.classifier(NumpyMLP(entry.path)) for route, entry in STORED.items()}


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _endpoint(route: str, batch: bool):
    entry, classifier = STORED[route], CLASSIFIERS[route]
    field = "images" if batch else "image"

    async def endpoint(request: Request) -> JSONResponse:
        try:
            form = await request.form(max_files=MAX_BATCH_FILES + 1)
        except Exception:
            return _error(400, "the request body is not valid multipart/form-data")
        uploads = form.getlist(field)
        k = top_k_of(form.get("top_k"), entry)
        if k is None or not 1 <= len(uploads) <= (MAX_BATCH_FILES if batch else 1) or isinstance(uploads[0], str):
            return _error(400, "bad field, top_k or number of images")
        data = [await upload.read() for upload in uploads]
        try:
            answers = classifier.predict(data, k)
        except ImageError as exc:
            return _error(exc.status_code, str(exc))
        if batch:
            return JSONResponse({"model": entry.tag, "predictions": answers})
        return JSONResponse(answers[0])

    return endpoint


async def _ready(request: Request) -> JSONResponse:
    return JSONResponse({"ready": True})


app = Starlette(routes=[Route("/readyz", _ready)] + [
    Route(f"/{route}/{name}", _endpoint(route, name == "predict_batch"), methods=["POST"])
    for route in STORED for name in ("predict", "predict_batch")
])
