"""The public HTTP routes: decode and validate the upload, preprocess, call the batched model, answer.

:func:`create_app` builds a FastAPI app with ``POST /<route>/predict`` and ``/<route>/predict_batch``
for every family of the catalog, and the Open Inference Protocol routes (service/open_inference.py).
The routes reach the running service through a dependency on ``bentoml.get_current_service``
(BentoML's documented shape for a mounted FastAPI app): it holds one :class:`~inference.Classifier`
per route in ``service.classifiers``, which does the work; a route checks the request and shapes
nothing but errors. A test swaps the service with ``app.dependency_overrides[current_service]``.
Every client mistake gets the documented JSON error ``{"error": "..."}`` with a 4xx status.
"""

import json
from typing import Annotated, Any, Sequence

import bentoml
from fastapi import Depends, FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from catalog import FAMILIES, Family
from inference import Classifier
from preprocessing import ImageError
from service.errors import BUSY, ClientError, busy_response, error_response
from service.open_inference import add_open_inference_routes
from service.settings import Settings
from service.web_ui import mount_ui


class LabelProbability(BaseModel):
    label: str
    probability: float = Field(description="calibrated probability of this class")


class Prediction(BaseModel):
    found: bool = Field(description="false when there is nothing to classify (a blank page, no ink, no hand): "
                        "then label, index and confidence are null, top_k is empty and reason says why; "
                        "the model did not run", examples=[True])
    unsure: bool = Field(description="true when the label is not to be taken as the answer: confidence is "
                         f"below the service's threshold (setting UNSURE_BELOW, default {Settings.unsure_below:g}), "
                         "or nothing was found", examples=[False])
    label: str | None = Field(description="the most probable class (the best guess, also when unsure); "
                              "null when nothing was found", examples=["7"])
    index: int | None = Field(description="its index in the model's output (its class list); null when "
                              "nothing was found", examples=[7])
    confidence: float | None = Field(
        description="its calibrated probability: the model's softmax with the temperature from the model's "
        "metadata applied (softmax(log p / T); T = 1 for a model stored without calibration); null when "
        "nothing was found", examples=[0.991])
    top_k: list[LabelProbability] = Field(description="the top_k classes, most probable first "
                                          "(calibrated probabilities); empty when nothing was found")
    reason: str | None = Field(description="why found is false or unsure is true, in words; null otherwise",
                               examples=[None])
    model: str = Field(description="the model that answered, name:version",
                       examples=[f"{FAMILIES[0].store_name}:4bttrfxlig3k2ax4"])
    input_image: str | None = Field(
        default=None,
        description="only with return_input=true: the preprocessed 28x28 image the model saw (or would "
        "have seen), as a data:image/png;base64 URL (white = 1.0)",
    )


class BatchPrediction(BaseModel):
    model: str
    predictions: list[Prediction] = Field(description="one per uploaded image, in upload order")


class ErrorBody(BaseModel):
    error: str = Field(description="what is wrong, in words", examples=["the file is not an image we can read"])


ERRORS = {
    400: {"model": ErrorBody, "description": "not a decodable image, missing or misnamed field, bad top_k"},
    408: {"model": ErrorBody, "description": "the request body stalled or came too slowly"},
    413: {"model": ErrorBody, "description": "request body larger than the limit, or an image that would cost "
          "more than the limits to decode (from its header)"},
    503: {"model": ErrorBody, "description": "overloaded: the request could not be served within "
          "the batching latency budget, every decoder is busy, or the model executor is restarting; "
          "retry (Retry-After)"},
    "4XX": {"model": ErrorBody, "description": "every client error has this shape (never 422)"},
}


async def current_service() -> Any:
    """The running service instance of this worker (it holds ``classifiers[route]``).

    ``bentoml.get_current_service`` behind an async function: FastAPI runs a plain function
    dependency in its thread pool, a thread hop per request that cost 8 % of a worker's CPU.
    Tests replace this dependency with ``app.dependency_overrides[current_service]``."""
    return bentoml.get_current_service()


CurrentService = Annotated[Any, Depends(current_service)]
ImageField = Annotated[UploadFile, File(description="the image: PNG, JPEG, WebP, BMP, GIF or TIFF")]
ImagesField = Annotated[list[UploadFile], File(description="the images (1 to 64), one field each, in order")]
TopKField = Annotated[int, Form(description="how many classes to list, 1 ... number of classes")]
ReturnInputField = Annotated[bool, Form(description="also return the preprocessed 28x28 image the model saw "
                                                    "(input_image)")]


def create_app(settings: Settings, families: Sequence[Family] = FAMILIES) -> FastAPI:
    """The FastAPI app of the upload routes, the Open Inference Protocol routes, the web page and
    the API reference page. The body limit and the other guards of every route are
    service/guards.py's, registered on the BentoML service."""
    app = FastAPI(
        title="Digits and signs",
        description="Dense MNIST digit and ASL letter classifiers from the course 'How a Neural Network Trains'.",
        docs_url=None, redoc_url=None, openapi_url=None,  # BentoML serves the merged OpenAPI spec
        # BentoML's own middleware traces requests (TRACING=on); FastAPI's would only add spans
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    _add_error_handlers(app)
    for family in families:
        _add_family_routes(app, family, settings)
    add_open_inference_routes(app, settings, current_service, families)
    mount_ui(app)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ClientError)
    async def _client_error(request: Request, exc: ClientError):
        return error_response(exc.status_code, str(exc))

    @app.exception_handler(ImageError)
    async def _image_error(request: Request, exc: ImageError):
        return error_response(exc.status_code, str(exc))

    for kind in BUSY:
        app.add_exception_handler(kind, lambda request, exc: busy_response(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, exc: RequestValidationError):
        problems = []
        for error in exc.errors():
            field = str(error.get("loc", ("", "?"))[-1])
            if field in ("image", "images"):
                problems.append(
                    f"the request has no file field '{field}': send the image"
                    f"{'s' if field == 'images' else ''} as multipart/form-data with the field name '{field}'"
                )
            elif field == "top_k":
                problems.append("top_k must be a whole number (e.g. 3)")
            elif field == "return_input":
                problems.append("return_input must be true or false")
            else:
                problems.append(f"{field}: {error.get('msg', 'invalid')}")
        return error_response(400, "; ".join(dict.fromkeys(problems)) or "invalid request")

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException):
        message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        if exc.status_code == 400 and "parsing the body" in message:
            message = "the request body is not valid multipart/form-data"
        elif exc.status_code == 405:
            allowed = (exc.headers or {}).get("Allow", "")
            message = f"method {request.method} is not allowed on {request.url.path}; allowed: {allowed}"
        return error_response(exc.status_code, message, exc.headers)  # 405's Allow


def _check_top_k(top_k: int, classifier: Classifier) -> None:
    if not 1 <= top_k <= len(classifier.class_names):
        raise ClientError(400, f"top_k must be between 1 and {len(classifier.class_names)} for this model, "
                          f"got {top_k}")


def _add_family_routes(app: FastAPI, family: Family, settings: Settings) -> None:
    """POST /<route>/predict and /<route>/predict_batch for one family."""
    route, what = family.route, family.classifies

    @app.post(f"/{route}/predict", response_model=Prediction, responses=ERRORS,
              summary=f"Classify one image of {what}", tags=[route], operation_id=f"{route}_predict",
              response_model_exclude_none=True)
    async def predict(service: CurrentService, image: ImageField,
                      top_k: TopKField = settings.default_top_k,
                      return_input: ReturnInputField = False) -> JSONResponse:
        classifier: Classifier = service.classifiers[route]
        _check_top_k(top_k, classifier)
        # JSONResponse directly: the answer is built to the documented model already, and
        # FastAPI's re-validation of it cost ~4 % of a worker's CPU
        return JSONResponse(await classifier.classify(await image.read(), top_k, return_input))

    @app.post(f"/{route}/predict_batch", response_model=BatchPrediction, responses=ERRORS,
              summary=f"Classify up to {settings.max_batch_files} images of {what}", tags=[route],
              operation_id=f"{route}_predict_batch", response_model_exclude_none=True)
    async def predict_batch(service: CurrentService, images: ImagesField,
                            top_k: TopKField = settings.default_top_k,
                            return_input: ReturnInputField = False) -> JSONResponse:
        classifier: Classifier = service.classifiers[route]
        _check_top_k(top_k, classifier)
        if not 1 <= len(images) <= settings.max_batch_files:
            raise ClientError(400, f"send 1 to {settings.max_batch_files} images, got {len(images)}")
        named = [(f"image {i} ({upload.filename or 'unnamed'})", await upload.read())
                 for i, upload in enumerate(images, start=1)]
        predictions = await classifier.classify_batch(named, top_k, return_input)
        return JSONResponse({"model": classifier.tag, "predictions": predictions})
