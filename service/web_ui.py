"""The web page to try the models, and the API reference page; static files, no CDN.

Routes added to the FastAPI app (none of them appears in the OpenAPI spec):

* ``/ui/``  the page (``service/web/``: ``index.html``, ``app.js``, ``style.css``), Starlette
  ``StaticFiles``; ``/ui`` redirects to ``/ui/``.
* ``/``     redirects to ``/ui/``. BentoML consults the mounted app before its own index route, so
  this takes over BentoML's default page at ``/``.
* ``/docs`` the API reference: Swagger UI from the ``swagger-ui-bundle`` package (served under
  ``/docs/assets/``), reading the OpenAPI spec at ``/docs.json``: BentoML's, with our own
  description (BentoML's default one shows third-party badge images), made for Swagger UI by
  :func:`docs_spec` (file pickers for uploads, the upload routes first).

Nothing is loaded from another origin, and every page says so to the browser: a
Content-Security-Policy header (:data:`CONTENT_SECURITY_POLICY`) on every answer of these routes.

Every URL is relative (``ui/``, ``docs.json``), so the pages also work behind a proxy that adds a
path prefix; the page calls the API with relative URLs (``../mnist/predict``).
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Callable, Iterable

from fastapi import FastAPI
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from catalog import FAMILIES

WEB_DIR = Path(__file__).with_name("web")
UI_PATH = "/ui"
DOCS_PATH = "/docs"
#: Same-origin only: scripts, styles, images (data: and blob: for the page's own canvases and the
#: camera), and fetches; no plugins, no framing, no forms to elsewhere.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' blob: mediastream:; connect-src 'self'; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "no-referrer"}
#: The families' upload routes (service/api.py), first on the API reference page, in catalog order.
UPLOAD_PATHS = tuple(f"/{family.route}/{name}" for family in FAMILIES for name in ("predict", "predict_batch"))
#: BentoML writes ``[{"url": "."}]`` (bentoml/_internal/service/openapi), which Swagger UI shows as
#: a bare ".". Still a relative URL, now with words: Swagger UI resolves it against /docs.json's
#: address, so "Try it out" also reaches the service behind a proxy's path prefix. Without servers
#: it would call the origin's root, and behind a proxy the service knows no absolute URL of itself.
SERVERS = ({"url": "./", "description": "this service, at the address this page was loaded from"},)
_HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


def mount_ui(app: FastAPI) -> None:
    """Add the page, the redirects to it and the API reference page to ``app``."""
    from swagger_ui_bundle import swagger_ui_path

    @app.get("/", include_in_schema=False)
    async def _home() -> Response:
        return RedirectResponse("ui/", status_code=307)

    @app.get(UI_PATH, include_in_schema=False)
    async def _ui_without_slash() -> Response:
        return RedirectResponse("ui/", status_code=307)

    @app.get(DOCS_PATH, include_in_schema=False)
    async def _api_reference() -> Response:
        return FileResponse(WEB_DIR / "api-docs.html", media_type="text/html",
                            headers={"Cache-Control": "no-cache", **SECURITY_HEADERS})

    app.mount(f"{DOCS_PATH}/assets", NoCacheStaticFiles(directory=swagger_ui_path), name="docs-assets")
    app.mount(UI_PATH, NoCacheStaticFiles(directory=WEB_DIR, html=True), name="ui")


class NoCacheStaticFiles(StaticFiles):
    """StaticFiles whose answers browsers revalidate (ETag) on every load: a new version of the
    page is picked up at once, and an unchanged one still costs only a 304."""

    def file_response(self, *args, **kwargs) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "no-cache"
        response.headers.update(SECURITY_HEADERS)
        return response


def add_openapi_route(app: FastAPI, bentoml_spec: Callable[[], dict]) -> None:
    """``GET /docs.json``: ``bentoml_spec()`` (the service's merged OpenAPI spec) with ``app``'s own
    title and description instead of BentoML's default (badges from a third-party image host, and
    BentoML's contact). Served from ``app``, which BentoML consults before its own ``/docs.json``."""

    @functools.cache
    def spec() -> dict:
        document = bentoml_spec()
        info = dict(document.get("info") or {})
        info.pop("contact", None)
        info.update(title=app.title, description=app.description)
        if info.get("version") in (None, "None"):  # BentoML's when not served from a Bento
            info["version"] = app.version
        return docs_spec({**document, "info": info})

    @app.get("/docs.json", include_in_schema=False)
    async def _openapi() -> Response:
        return JSONResponse(spec(), headers={"Cache-Control": "no-cache"})


def docs_spec(document: dict, first_paths: Iterable[str] = UPLOAD_PATHS) -> dict:
    """``document`` (an OpenAPI 3.0 spec, left unchanged) as the API reference page shows it: every
    file field of a multipart body ``format: binary``, ``first_paths`` first, and :data:`SERVERS`."""
    document = copy.deepcopy(document)
    _binary_file_fields(document)
    _put_first(document, first_paths)
    document["servers"] = [dict(server) for server in SERVERS]
    return document


def _resolve(document: dict, node):
    """``node``, or what its local ``$ref`` (``#/components/...``) points to."""
    while isinstance(node, dict) and str(node.get("$ref", "")).startswith("#/"):
        pointer, node = node["$ref"][2:].split("/"), document
        for key in pointer:
            node = node.get(key.replace("~1", "/").replace("~0", "~"), {}) if isinstance(node, dict) else {}
    return node


def _binary_file_fields(document: dict) -> None:
    """FastAPI describes a file as ``{"type": "string", "contentMediaType": ...}`` (JSON Schema,
    OpenAPI 3.1); Swagger UI offers a file picker for OpenAPI 3.0's ``format: binary`` only. Rewrites
    every such schema in multipart bodies, inline or in components, in arrays and compositions."""
    seen = set()

    def visit(schema) -> None:
        schema = _resolve(document, schema)
        if not isinstance(schema, dict) or id(schema) in seen:
            return
        seen.add(id(schema))
        if "contentMediaType" in schema and schema.get("type", "string") == "string":
            del schema["contentMediaType"]
            schema.update(type="string", format="binary")
        for key in ("items", "additionalProperties", "not"):
            visit(schema.get(key))
        for value in (schema.get("properties") or {}).values():
            visit(value)
        for key in ("allOf", "anyOf", "oneOf"):
            for value in schema.get(key) or ():
                visit(value)

    for path_item in (document.get("paths") or {}).values():
        for method, operation in path_item.items():
            if method in _HTTP_METHODS:
                body = _resolve(document, operation.get("requestBody")) or {}
                for media_type, content in (body.get("content") or {}).items():
                    if media_type.startswith("multipart/"):
                        visit(content.get("schema"))


def _put_first(document: dict, first_paths: Iterable[str]) -> None:
    """``first_paths`` (those the document has) first in ``paths``, the others in their order after.

    Swagger UI groups operations by tag: first the tags of the ``tags`` list, in its order, then
    the others in the order their first operation comes. So the first paths' tags go to the front
    of ``tags`` too (where the document has one)."""
    paths = document.get("paths") or {}
    first = [path for path in first_paths if path in paths]
    document["paths"] = {path: paths[path] for path in [*first, *paths]}
    if "tags" not in document:
        return
    first_tags = dict.fromkeys(tag for path in first for method, operation in paths[path].items()
                               if method in _HTTP_METHODS for tag in operation.get("tags") or ())
    declared = {tag["name"]: tag for tag in document["tags"]}
    document["tags"] = ([declared.get(name, {"name": name}) for name in first_tags]
                        + [tag for tag in document["tags"] if tag["name"] not in first_tags])
