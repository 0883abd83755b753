"""The HTTP layer on its own: create_app() with a stand-in service, no BentoML server, no model."""

from __future__ import annotations

import copy
import io

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from catalog import ROUTES, ModelMetadata, family
from execution.batching import Overloaded
from inference import Classifier
from service.api import create_app, current_service
from service.settings import Settings
from service.web_ui import SERVERS, UPLOAD_PATHS, add_openapi_route, docs_spec


class StandInModel:
    """An awaitable forward pass that always answers the third class, and counts its rows."""

    def __init__(self, classes: int, busy: bool = False):
        self.classes, self.busy, self.calls = classes, busy, []

    async def __call__(self, rows: np.ndarray) -> np.ndarray:
        if self.busy:
            raise Overloaded("busy")
        self.calls.append(len(rows))
        out = np.full((len(rows), self.classes), 0.01, np.float32)
        out[:, 2] = 1 - 0.01 * (self.classes - 1)
        return out


class FakeService:
    """What the routes use of the service: a Classifier per route, whose model is a stand-in."""

    def __init__(self, busy: bool = False):
        self.classifiers, self.models = {}, {}
        for route in ("mnist", "asl"):
            fam = family(route)
            self.models[route] = StandInModel(len(fam.class_names), busy)
            metadata = ModelMetadata(class_names=list(fam.class_names), preprocessing=fam.preprocessing)
            self.classifiers[route] = Classifier(f"{fam.store_name}:test", metadata, self.models[route])

    def __is_ready__(self) -> bool:
        return True


def client(service: FakeService, **settings) -> TestClient:
    app = create_app(Settings(**settings))
    app.dependency_overrides[current_service] = lambda: service
    return TestClient(app)


def png() -> bytes:
    canvas = np.full((60, 60), 230, np.uint8)
    canvas[10:50, 28:33] = 10
    buffer = io.BytesIO()
    Image.fromarray(canvas).save(buffer, format="PNG")
    return buffer.getvalue()


def test_predict_shapes_the_answer_from_the_models_metadata():
    service = FakeService()
    body = client(service).post("/asl/predict", files={"image": ("a.png", png())}, data={"top_k": "2"}).json()
    assert body["label"] == "C" and body["index"] == 2 and body["model"] == "asl_dense:test"
    assert [entry["label"] for entry in body["top_k"]][0] == "C" and len(body["top_k"]) == 2
    assert service.models["asl"].calls == [1]


def test_predict_batch_is_one_forward_pass_in_upload_order():
    service = FakeService()
    files = [("images", (f"{i}.png", png())) for i in range(3)]
    body = client(service).post("/mnist/predict_batch", files=files).json()
    assert len(body["predictions"]) == 3 and service.models["mnist"].calls == [3]


@pytest.mark.parametrize("files, data, status, text", [
    ({"image": ("x.txt", b"not an image")}, {}, 400, "not an image"),
    ({"picture": ("a.png", b"x")}, {}, 400, "no file field 'image'"),
    ({"image": ("a.png", b"x")}, {"top_k": "0"}, 400, "top_k must be between 1 and 10"),
    ({"image": ("a.png", b"x")}, {"top_k": "three"}, 400, "top_k must be a whole number"),
])
def test_client_mistakes_are_json_4xx(files, data, status, text):
    response = client(FakeService()).post("/mnist/predict", files=files, data=data)
    assert response.status_code == status and text in response.json()["error"]


def test_a_busy_model_answers_503_with_retry_after():
    response = client(FakeService(busy=True)).post("/mnist/predict", files={"image": ("a.png", png())})
    assert response.status_code == 503 and response.headers["Retry-After"] == "1" and "busy" in response.json()["error"]


def test_the_guard_in_front_limits_the_body_and_answers_unknown_paths_in_json():
    """service/guards.py's Guard sits in front of every route (BentoML's own too); here in front of the app."""
    from service.guards import Guard

    app = create_app(Settings())
    app.dependency_overrides[current_service] = lambda: FakeService()
    guarded = TestClient(Guard(app, max_body_bytes=1000, body_timeout_s=1.0))
    response = guarded.post("/mnist/predict", files={"image": ("a.png", b"x" * 5000)})
    assert response.status_code == 413 and "limit" in response.json()["error"]
    assert guarded.post("/mnist/predict", files={"image": ("a.png", png())}).status_code == 200
    missing = guarded.get("/nowhere")
    assert missing.status_code == 404 and "error" in missing.json()


# ------------------------------------------------------------------ the API reference's spec (/docs.json)

FILE = {"type": "string", "contentMediaType": "application/octet-stream"}
BINARY = {"type": "string", "format": "binary"}


def multipart(schema: dict) -> dict:
    return {"content": {"multipart/form-data": {"schema": schema}}}


def test_docs_spec_makes_file_fields_binary_and_puts_the_first_paths_first():
    """service/web_ui.docs_spec on a small spec: file fields inline, through $refs and in arrays;
    paths and tags in order; a relative server. The input is left as it was."""
    spec = {
        "openapi": "3.0.2",
        "servers": [{"url": "."}],
        "tags": [{"name": "Infrastructure", "description": "probes"}, {"name": "a", "description": "family a"}],
        "paths": {
            "/healthz": {"get": {"tags": ["Infrastructure"]}},
            "/v2/models/{name}/infer": {"post": {"tags": ["v2"], "requestBody": {
                "content": {"application/json": {"schema": {"type": "string", "contentMediaType": "image/png"}}}}}},
            "/b/predict": {"post": {"tags": ["b"], "requestBody": multipart(
                {"type": "object", "properties": {"image": dict(FILE), "note": {"type": "string"}}})}},
            "/a/predict_batch": {"post": {"tags": ["a"], "requestBody": multipart(
                {"$ref": "#/components/schemas/Body_a_predict_batch"})}},
            "/a/predict": {"post": {"tags": ["a"], "requestBody": {"$ref": "#/components/requestBodies/One"}},
                           "parameters": []},
        },
        "components": {
            "schemas": {
                "Body_a_predict_batch": {"type": "object", "properties": {
                    "images": {"type": "array", "items": {"$ref": "#/components/schemas/File"}},
                    "more": {"type": "array", "items": dict(FILE)}, "top_k": {"type": "integer"}}},
                "File": dict(FILE),
            },
            "requestBodies": {"One": multipart({"type": "object", "properties": {
                "image": {"anyOf": [dict(FILE), {"type": "null"}]}}})},
        },
    }
    before = copy.deepcopy(spec)
    shown = docs_spec(spec, ["/a/predict", "/a/predict_batch", "/b/predict", "/b/predict_batch"])
    assert spec == before

    inline = shown["paths"]["/b/predict"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert inline["properties"] == {"image": BINARY, "note": {"type": "string"}}
    schemas = shown["components"]["schemas"]
    assert schemas["File"] == BINARY  # the array's items, through a $ref
    assert schemas["Body_a_predict_batch"]["properties"]["more"] == {"type": "array", "items": BINARY}
    assert schemas["Body_a_predict_batch"]["properties"]["top_k"] == {"type": "integer"}
    one = shown["components"]["requestBodies"]["One"]["content"]["multipart/form-data"]["schema"]
    assert one["properties"]["image"]["anyOf"][0] == BINARY
    assert shown["paths"]["/v2/models/{name}/infer"] == spec["paths"]["/v2/models/{name}/infer"]  # not multipart

    # Swagger UI shows the tags of the tags list first, then the others by first operation
    assert list(shown["paths"]) == ["/a/predict", "/a/predict_batch", "/b/predict", "/healthz",
                                    "/v2/models/{name}/infer"]
    assert shown["tags"] == [{"name": "a", "description": "family a"}, {"name": "b"},
                             {"name": "Infrastructure", "description": "probes"}]
    assert shown["servers"] == list(SERVERS)
    assert SERVERS[0]["url"].startswith(".") and "://" not in SERVERS[0]["url"]  # relative: works behind a prefix
    assert "tags" not in docs_spec({"paths": spec["paths"]}, ["/a/predict"])


def test_docs_json_gives_the_upload_routes_file_pickers_and_shows_them_first():
    """/docs.json from the app's real routes (as BentoML merges them, behind its own paths)."""
    from fastapi.openapi.utils import get_openapi

    app = create_app(Settings())
    routes = get_openapi(title="x", version="1", routes=app.routes)
    bentoml_like = {**routes, "servers": [{"url": "."}], "tags": [{"name": "Infrastructure"}],
                    "paths": {"/healthz": {"get": {"tags": ["Infrastructure"]}}, **routes["paths"]}}
    add_openapi_route(app, lambda: bentoml_like)
    spec = TestClient(app).get("/docs.json").json()
    assert UPLOAD_PATHS == tuple(f"/{route}/{name}" for route in ROUTES for name in ("predict", "predict_batch"))
    assert list(spec["paths"])[: len(UPLOAD_PATHS) + 1] == [*UPLOAD_PATHS, "/healthz"]  # then the rest, in order
    assert [tag["name"] for tag in spec["tags"]][: len(ROUTES) + 1] == [*ROUTES, "Infrastructure"]
    schemas = spec["components"]["schemas"]
    for path in UPLOAD_PATHS:
        body = spec["paths"][path]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
        fields = schemas[body["$ref"].split("/")[-1]]["properties"]
        field = fields["images"]["items"] if path.endswith("_batch") else fields["image"]
        assert field["type"] == "string" and field["format"] == "binary" and "contentMediaType" not in field
