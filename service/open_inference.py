"""The Open Inference Protocol (KServe v2 REST), the protocol inference clients already speak
(Triton's ``tritonclient``, KServe, Seldon): the bulk route, where batching pays.

Per catalog family, the model named by its route (``mnist``, ``asl``), its version the store's:

* ``GET /v2``, ``/v2/health/live``, ``/v2/health/ready``: the server, its liveness and readiness;
* ``GET /v2/models/{name}[/versions/{version}]`` and ``.../ready``: the model's metadata, readiness;
* ``POST /v2/models/{name}[/versions/{version}]/infer``: one input ``pixels``, shape ``[n, 784]``,
  images already preprocessed (what ``return_input`` shows): ``FP32`` in 0..1 or ``UINT8`` 0..255,
  as JSON ``data`` or in the binary tensor extension (``Inference-Header-Content-Length``); one
  output ``probabilities``, ``[n, classes]`` FP32, calibrated like every answer, as JSON or as
  binary when asked (``binary_data`` on the output, or ``binary_data_output`` on the request).

The rows go through the same batched forward pass as the uploads (the in-worker queue or the model
executor). A request holds at most ``MAX_INFER_ROWS`` rows; its body is at most the largest useful
one, that many FP32 rows in binary after a JSON header (``Settings.max_infer_bytes``), and
a body of JSON only is held to ``Settings.max_json_bytes`` (parsing JSON holds the event loop).
Every mistake is a 4xx with the protocol's error body ``{"error": "..."}``.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Sequence

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from catalog import Family
from inference import Classifier
from preprocessing import VECTOR_LENGTH
from service.errors import ClientError
from service.settings import Settings

INPUT, OUTPUT = "pixels", "probabilities"
DATATYPES = {"FP32": np.dtype("<f4"), "UINT8": np.dtype(np.uint8)}
HEADER = "inference-header-content-length"
TAG = "open inference protocol"


def is_infer_path(path: str) -> bool:
    """Whether ``path`` is an inference route (their bodies may reach ``Settings.max_infer_bytes``)."""
    return path.startswith("/v2/models/") and path.endswith("/infer")


def add_open_inference_routes(app: FastAPI, settings: Settings, current_service: Callable,
                              families: Sequence[Family]) -> None:
    """The protocol's routes on ``app``; ``current_service`` is the app's dependency on the service."""
    from fastapi import Depends

    routes = [family.route for family in families]
    Service = Depends(current_service)

    def classifier(service: Any, name: str, version: str | None) -> Classifier:
        if name not in routes:
            raise ClientError(404, f"no model {name!r}; the models are {', '.join(routes)}")
        found: Classifier = service.classifiers[name]
        if version is not None and version != _version(found):
            raise ClientError(404, f"model {name!r} has no version {version!r}; it serves {_version(found)!r}")
        return found

    @app.get("/v2", tags=[TAG], summary="Server metadata")
    async def server_metadata() -> JSONResponse:
        return JSONResponse({"name": "digits_and_signs", "version": app.version,
                             "extensions": ["binary_tensor_data"]})

    @app.get("/v2/health/live", tags=[TAG], summary="Server liveness")
    async def live() -> JSONResponse:
        return JSONResponse({"live": True})

    @app.get("/v2/health/ready", tags=[TAG], summary="Server readiness (400 when not ready, as the protocol says)")
    async def ready(service=Service) -> JSONResponse:
        is_ready = bool(service.__is_ready__())
        return JSONResponse({"ready": is_ready}, status_code=200 if is_ready else 400)

    for prefix in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):

        @app.get(prefix, tags=[TAG], summary="Model metadata")
        async def model_metadata(name: str, request: Request, service=Service) -> JSONResponse:
            found = classifier(service, name, request.path_params.get("version"))
            return JSONResponse({
                "name": name, "versions": [_version(found)], "platform": "keras",
                "inputs": [{"name": INPUT, "datatype": "FP32", "shape": [-1, VECTOR_LENGTH],
                            "parameters": {"also_accepts": "UINT8 (0-255)", "range": "0-1",
                                           "preprocessing": found.preprocessing}}],
                "outputs": [{"name": OUTPUT, "datatype": "FP32", "shape": [-1, len(found.class_names)],
                             "parameters": {"class_names": found.class_names}}],
            })

        @app.get(f"{prefix}/ready", tags=[TAG], summary="Model readiness")
        async def model_ready(name: str, request: Request, service=Service) -> JSONResponse:
            classifier(service, name, request.path_params.get("version"))
            is_ready = bool(service.__is_ready__())
            return JSONResponse({"name": name, "ready": is_ready}, status_code=200 if is_ready else 400)

        @app.post(f"{prefix}/infer", tags=[TAG], summary="Class probabilities of preprocessed images",
                  openapi_extra={"requestBody": {"content": {
                      "application/json": {"schema": {"type": "object"}},
                      "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}})
        async def infer(name: str, request: Request, service=Service) -> Response:
            found = classifier(service, name, request.path_params.get("version"))
            body = await _whole_body(request)
            head, binary = _split(body, request.headers.get(HEADER), settings)
            inference = _parse(head)
            rows, binary_out = _rows(inference, binary, settings)
            probabilities = await found.aprobabilities(rows)
            return _answer(name, _version(found), inference, probabilities, binary_out)


async def _whole_body(request: Request) -> bytes:
    """The request's body without a copy: the Guard in front (service/guards.py) read it whole and
    hands it on as one message (``Request.body()`` would join it with an empty last chunk: a copy
    of up to 12 MiB)."""
    message = await request.receive()
    body, chunks = message.get("body", b""), []
    while message.get("more_body"):  # only without the Guard (the app alone, in tests)
        chunks.append(body)
        message = await request.receive()
        body = message.get("body", b"")
    return b"".join([*chunks, body]) if chunks else body


def _version(classifier: Classifier) -> str:
    return classifier.tag.rpartition(":")[2]


def _split(body: bytes, header_length: str | None, settings: Settings) -> tuple[bytes, memoryview]:
    """The JSON part of the body and the binary tensor data after it."""
    if header_length is None:
        if len(body) > settings.max_json_bytes:
            raise ClientError(413, f"a JSON inference request may be at most {settings.max_json_bytes} bytes; "
                              "send larger tensors as binary data (Inference-Header-Content-Length)")
        return body, memoryview(b"")
    if not header_length.strip().isdigit() or int(header_length) > len(body):
        raise ClientError(400, f"Inference-Header-Content-Length must be a whole number of bytes within the "
                          f"body ({len(body)} bytes), got {header_length[:40]!r}")
    length = int(header_length)
    if length > settings.max_infer_header_bytes:
        raise ClientError(413, f"the JSON header may be at most {settings.max_infer_header_bytes} bytes "
                          f"(MAX_INFER_HEADER_BYTES), got {length}")
    return body[:length], memoryview(body)[length:]


def _parse(head: bytes) -> dict:
    try:
        inference = json.loads(head)
    except RecursionError:
        raise ClientError(400, "the inference request is not valid JSON: nested too deeply") from None
    except ValueError as exc:
        raise ClientError(400, f"the inference request is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(inference, dict) or not isinstance(inference.get("inputs"), list):
        raise ClientError(400, 'the inference request must be a JSON object with "inputs": [...]')
    return inference


def _rows(inference: dict, binary: memoryview, settings: Settings) -> tuple[np.ndarray, bool]:
    """The (n, 784) rows of the request's one input, checked; and whether the output goes binary."""
    inputs = inference["inputs"]
    if len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise ClientError(400, f'this model takes exactly one input, "{INPUT}" [n, {VECTOR_LENGTH}], '
                          f"got {len(inputs)}")
    tensor = inputs[0]
    if tensor.get("name") != INPUT:
        raise ClientError(400, f'unknown input {str(tensor.get("name"))[:60]!r}: this model takes "{INPUT}"')
    datatype = tensor.get("datatype")
    if datatype not in DATATYPES:
        raise ClientError(400, f"datatype must be FP32 (0-1) or UINT8 (0-255), got {str(datatype)[:20]!r}")
    dtype = DATATYPES[datatype]
    shape = tensor.get("shape")
    if (not isinstance(shape, list) or len(shape) != 2 or not all(type(d) is int for d in shape)
            or shape[1] != VECTOR_LENGTH or shape[0] < 1):
        raise ClientError(400, f"shape must be [n, {VECTOR_LENGTH}] (n images already preprocessed, "
                          f"what return_input shows), got {json.dumps(shape)[:80]}")
    n = shape[0]
    if n > settings.max_infer_rows:
        raise ClientError(400, f"send at most {settings.max_infer_rows} rows per request (MAX_INFER_ROWS), got {n}")
    parameters = tensor.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise ClientError(400, "an input's parameters must be a JSON object")
    expected = n * VECTOR_LENGTH * dtype.itemsize
    if "binary_data_size" in parameters:
        size = parameters["binary_data_size"]
        if type(size) is not int or size != expected or len(binary) != size:
            raise ClientError(400, f"binary_data_size must be the tensor's size, {expected} bytes for {n} "
                              f"{datatype} rows, and the binary data after the JSON header must be as long: "
                              f"binary_data_size {json.dumps(size)[:20]}, {len(binary)} bytes sent")
        rows = np.frombuffer(binary, dtype=dtype).reshape(n, VECTOR_LENGTH)
    else:
        if len(binary):
            raise ClientError(400, "binary data was sent, but the input has no binary_data_size parameter")
        rows = _json_rows(tensor.get("data"), dtype, n)
    if dtype == np.float32:
        with np.errstate(invalid="ignore"):
            inside = (rows >= 0) & (rows <= 1)  # False for NaN
        if not inside.all():
            raise ClientError(400, "FP32 pixels must be finite numbers from 0 to 1 (0 = black, 1 = white); "
                              "send 0-255 as UINT8")
    return rows, _binary_output(inference)


def _json_rows(data: Any, dtype: np.dtype, n: int) -> np.ndarray:
    if not isinstance(data, list):
        raise ClientError(400, 'the input has neither "data" nor binary data (parameters.binary_data_size)')
    try:
        values = np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise ClientError(400, "data must be numbers, flat or nested by the shape") from None
    if values.size != n * VECTOR_LENGTH:
        raise ClientError(400, f"data holds {values.size} numbers; the shape [{n}, {VECTOR_LENGTH}] "
                          f"needs {n * VECTOR_LENGTH}")
    values = values.reshape(n, VECTOR_LENGTH)
    if dtype == np.uint8:
        if not (np.isfinite(values).all() and (values == np.round(values)).all()
                and values.min() >= 0 and values.max() <= 255):
            raise ClientError(400, "UINT8 pixels must be whole numbers from 0 to 255")
        return values.astype(np.uint8)
    return values.astype(np.float32)


def _binary_output(inference: dict) -> bool:
    parameters = inference.get("parameters") or {}
    binary = bool(parameters.get("binary_data_output", False)) if isinstance(parameters, dict) else False
    outputs = inference.get("outputs")
    if outputs is None:
        return binary
    if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
        raise ClientError(400, 'outputs must be a list of {"name": ...} objects')
    for output in outputs:
        if output.get("name") != OUTPUT:
            raise ClientError(400, f'unknown output {str(output.get("name"))[:60]!r}: this model gives "{OUTPUT}"')
        own = output.get("parameters") or {}
        if isinstance(own, dict) and "binary_data" in own:
            binary = bool(own["binary_data"])
    return binary


def _answer(name: str, version: str, inference: dict, probabilities: np.ndarray, binary: bool) -> Response:
    probabilities = np.ascontiguousarray(probabilities, dtype="<f4")
    output: dict = {"name": OUTPUT, "datatype": "FP32", "shape": list(probabilities.shape)}
    answer: dict = {"model_name": name, "model_version": version}
    if isinstance(inference.get("id"), str):
        answer["id"] = inference["id"]
    answer["outputs"] = [output]
    if not binary:
        output["data"] = probabilities.ravel().tolist()
        return JSONResponse(answer)
    output["parameters"] = {"binary_data_size": probabilities.nbytes}
    head = json.dumps(answer).encode()
    return Response(head + probabilities.tobytes(), media_type="application/octet-stream",
                    headers={"Inference-Header-Content-Length": str(len(head))})
