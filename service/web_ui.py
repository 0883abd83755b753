"""The web page to try the models, and the API reference page; static files, no CDN.

Routes added to the FastAPI app (none of them appears in the OpenAPI spec):

* ``/ui/``  the page (``service/web/``: ``index.html``, ``app.js``, ``style.css``), Starlette
  ``StaticFiles``; ``/ui`` redirects to ``/ui/``.
* ``/``     redirects to ``/ui/``. BentoML consults the mounted app before its own index route, so
  this takes over BentoML's default page at ``/``.
* ``/docs`` the API reference: Swagger UI from the ``swagger-ui-bundle`` package (served under
  ``/docs/assets/``), reading the OpenAPI spec at ``/docs.json``: BentoML's, with our own
  description (BentoML's default one shows third-party badge images).

Nothing is loaded from another origin, and every page says so to the browser: a
Content-Security-Policy header (:data:`CONTENT_SECURITY_POLICY`) on every answer of these routes.

Every URL is relative (``ui/``, ``docs.json``), so the pages also work behind a proxy that adds a
path prefix; the page calls the API with relative URLs (``../mnist/predict``).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable

from fastapi import FastAPI
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles

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
        return {**document, "info": info}

    @app.get("/docs.json", include_in_schema=False)
    async def _openapi() -> Response:
        return JSONResponse(spec(), headers={"Cache-Control": "no-cache"})
