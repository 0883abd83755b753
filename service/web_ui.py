"""The web page to try the models, and the API reference page; static files, no CDN.

Routes added to the FastAPI app (none of them appears in the OpenAPI spec):

* ``/ui/``  the page (``service/web/``: ``index.html``, ``app.js``, ``style.css``), Starlette
  ``StaticFiles``; ``/ui`` redirects to ``/ui/``.
* ``/``     redirects to ``/ui/``. BentoML consults the mounted app before its own index route, so
  this takes over BentoML's default page at ``/``.
* ``/docs`` the API reference: Swagger UI from the ``swagger-ui-bundle`` package (served under
  ``/docs/assets/``), reading the OpenAPI spec BentoML serves at ``/docs.json``.

Every URL is relative (``ui/``, ``docs.json``), so the pages also work behind a proxy that adds a
path prefix; the page calls the API with relative URLs (``../mnist/predict``).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles

WEB_DIR = Path(__file__).with_name("web")
UI_PATH = "/ui"
DOCS_PATH = "/docs"


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
        return FileResponse(WEB_DIR / "api-docs.html", media_type="text/html", headers={"Cache-Control": "no-cache"})

    app.mount(f"{DOCS_PATH}/assets", NoCacheStaticFiles(directory=swagger_ui_path), name="docs-assets")
    app.mount(UI_PATH, NoCacheStaticFiles(directory=WEB_DIR, html=True), name="ui")


class NoCacheStaticFiles(StaticFiles):
    """StaticFiles whose answers browsers revalidate (ETag) on every load: a new version of the
    page is picked up at once, and an unchanged one still costs only a 304."""

    def file_response(self, *args, **kwargs) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "no-cache"
        return response
