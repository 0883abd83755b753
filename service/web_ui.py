"""The web page to try the models: plain static files from ``service/web/``, served at ``/ui/``.

Routes added to the FastAPI app (none of them appears in the OpenAPI spec):

* ``/ui/``  the page (``index.html``, ``app.js``, ``style.css``), Starlette ``StaticFiles``;
  ``/ui`` redirects to ``/ui/``.
* ``/``     redirects to ``/ui/``. BentoML 1.4.30 consults the mounted app (a "passive" mount)
  before its own index route, so this takes over BentoML's default page at ``/``.
* ``/docs`` BentoML's own OpenAPI (Swagger UI) page, the one it served at ``/``, unchanged: its
  assets (``/static_content/...``) and the spec (``/docs.json``) stay where BentoML serves them.

The redirects are relative (``ui/``), so the page also works behind a proxy that adds a path
prefix; the page itself calls the API with relative URLs (``../mnist/predict``).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, PlainTextResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles

WEB_DIR = Path(__file__).with_name("web")
UI_PATH = "/ui"
DOCS_PATH = "/docs"


def bentoml_openapi_page() -> Path | None:
    """BentoML's Swagger UI page (the file it serves at ``/`` by default), if this version has it."""
    try:
        import _bentoml_impl.server as bentoml_server
    except ImportError:  # pragma: no cover - another BentoML layout
        return None
    page = Path(bentoml_server.__file__).with_name("main-openapi.html")
    return page if page.is_file() else None


def mount_ui(app: FastAPI) -> None:
    """Add the page, the redirects to it and the relocated OpenAPI page to ``app``."""

    @app.get("/", include_in_schema=False)
    async def _home() -> Response:
        return RedirectResponse("ui/", status_code=307)

    @app.get(UI_PATH, include_in_schema=False)
    async def _ui_without_slash() -> Response:
        return RedirectResponse("ui/", status_code=307)

    @app.get(DOCS_PATH, include_in_schema=False)
    async def _openapi_page() -> Response:
        page = bentoml_openapi_page()
        if page is None:  # pragma: no cover - another BentoML layout
            return PlainTextResponse("The OpenAPI spec is at /docs.json", status_code=404)
        return FileResponse(page, media_type="text/html", headers={"Cache-Control": "no-cache"})

    app.mount(UI_PATH, NoCacheStaticFiles(directory=WEB_DIR, html=True), name="ui")


class NoCacheStaticFiles(StaticFiles):
    """StaticFiles whose answers browsers revalidate (ETag) on every load: a new version of the
    page is picked up at once, and an unchanged one still costs only a 304."""

    def file_response(self, *args, **kwargs) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "no-cache"
        return response
