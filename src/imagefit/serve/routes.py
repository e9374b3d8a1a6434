"""The HTTP wiring: error handlers, the API routes, the photo page and the offline docs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from .handlers import Server
from .limits import ServeError
from .schemas import ERROR_RESPONSES, Health, PredictResponse, predict_body

STATIC = Path(__file__).parent / "static"


def add_error_handlers(app: FastAPI) -> None:
    """Every error answer is JSON ``{"error": code, "detail": sentence}``; a bug is a 500 without a traceback."""

    @app.exception_handler(ServeError)
    async def _serve_error(_: Request, exc: ServeError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(
            exc.status_code, "bad_request" if exc.status_code < 500 else "server_error"
        )
        return JSONResponse({"error": code, "detail": str(exc.detail)}, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": "invalid_request", "detail": str(exc.errors())[:500]}, status_code=422)

    @app.exception_handler(Exception)
    async def _internal_error(_: Request, exc: Exception) -> JSONResponse:
        # Only a bug gets here; say so without leaking a traceback to the client.
        return JSONResponse({"error": "internal_error", "detail": f"{type(exc).__name__}: see the server log"}, status_code=500)


def add_api_routes(app: FastAPI, server: Server) -> None:
    """``GET /health``, ``GET /model``, ``POST /predict``."""

    @app.get("/health", response_model=Health, tags=["service"], summary="Liveness and batching counters")
    async def health() -> Health:
        return server.health()

    @app.get("/model", tags=["service"], summary="Classes, backbone, calibration, validation metrics and limits")
    async def model_info() -> dict[str, Any]:
        return server.model_info()

    @app.post(
        "/predict",
        response_model=PredictResponse,
        responses=ERROR_RESPONSES,
        tags=["predict"],
        summary="Classify one or more images",
        description=(
            "Send `multipart/form-data` with one or more parts named `files`. The answer lists one prediction "
            "per image, in upload order; if any image is refused, the whole request is refused with the status "
            "and error code of the first problem found (see the responses below)."
        ),
        openapi_extra=predict_body(server.settings.max_files),
    )
    async def predict(request: Request) -> PredictResponse:
        return await server.predict(request)


def swagger_assets() -> Path | None:
    """Swagger UI 5 files from an installed package, or None.

    FastAPI's own ``/docs`` loads Swagger UI from a CDN, which fails offline.
    Swagger UI before 5 cannot render OpenAPI 3.1, so older bundles are ignored.
    """
    try:
        import swagger_ui_bundle
    except ImportError:
        return None
    path = Path(getattr(swagger_ui_bundle, "swagger_ui_path", ""))
    m = re.search(r"(\d+)\.\d+\.\d+$", path.name)
    if not (path / "swagger-ui-bundle.js").is_file() or (m is not None and int(m.group(1)) < 5):
        return None
    return path


def add_page_routes(app: FastAPI, swagger: Path | None) -> None:
    """The photo page at ``/`` and the API docs at ``/docs``, both without network access."""
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    if swagger is not None:
        app.mount("/docs-assets", StaticFiles(directory=swagger), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        if swagger is None:
            return HTMLResponse((STATIC / "docs.html").read_text(encoding="utf-8"))
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=root + (app.openapi_url or "/openapi.json"),
            title="imagefit API",
            swagger_js_url=f"{root}/docs-assets/swagger-ui-bundle.js",
            swagger_css_url=f"{root}/docs-assets/swagger-ui.css",
            swagger_favicon_url=f"{root}/docs-assets/favicon-32x32.png",
            oauth2_redirect_url=None,
            # The default validator badge is fetched from swagger.io: none offline.
            swagger_ui_parameters={"validatorUrl": None},
        )


__all__ = ["STATIC", "add_api_routes", "add_error_handlers", "add_page_routes", "swagger_assets"]
