"""HTTP server for a trained model: FastAPI app factory and ``imagefit serve``.

Endpoints:

* ``GET /`` - a page to drop or pick photos and see each one's label and
  probability bars (plain HTML/JS/CSS from ``static/``, no external URLs).
* ``POST /predict`` - multipart field ``files`` (one or more images) ->
  ``{"predictions": [{"filename", "label", "probability", "probabilities"}], "model": {...}}``.
  Probabilities are calibrated with the model's temperature.
* ``GET /health`` - liveness plus batching counters.
* ``GET /model`` - classes, backbone, preprocessing, temperature, validation
  metrics from ``imagefit.json``, limits and batching settings.
* ``GET /docs`` - the API documentation, served offline: Swagger UI from the
  ``swagger-ui-bundle-v2`` package when installed (Swagger UI 5, which reads the
  OpenAPI 3.1 that FastAPI writes), else a small built-in page. The spec itself
  is ``GET /openapi.json``.

Limits (each refusal is JSON ``{"error": code, "detail": sentence}``; a bad
request never gets a 500 and never stops the server):

==========================================  ======  ==========================
what                                        status  ``error``
==========================================  ======  ==========================
body over ``max_upload_mb``                 413     ``too_large``
more than ``max_files`` images              413     ``too_many_files``
image over ``max_pixels`` (checked from     413     ``too_many_pixels``
the header, before decoding: bombs)
body not ``multipart/form-data``            415     ``unsupported_media_type``
part declared non-image, or bytes not       415     ``unsupported_media_type``
JPEG/PNG/WebP/GIF/BMP/TIFF
truncated or corrupt image, empty file      422     ``invalid_image``
empty body, no ``files`` field (wrong       422     ``no_files``
field name), text instead of a file
malformed multipart                         400     ``bad_request``
images over ``max_request_pixels``          413     ``request_too_many_pixels``
together (headers, before decoding)
too many images waiting (overload), or      503     ``busy`` (+ ``Retry-After``)
decode budget ``max_inflight_pixels`` spent
not answered within ``timeout_s``           504     ``timeout``
==========================================  ======  ==========================

Every setting, its default and bounds live in :class:`ServeSettings`
(:mod:`imagefit.serve.settings`). Inference is micro-batched across concurrent
requests (see :mod:`imagefit.serve.batcher`): images are decoded and preprocessed
in bounded thread pools within a pixel budget (:mod:`imagefit.serve.budget`),
then the backbone engine (OpenVINO or ONNX Runtime on CPU) runs on the whole
batch in one call, then the head. ``batch_window_ms=0`` turns batching off.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from ..errors import ImagefitError, invalid
from ..model import Model
from . import routes
from .handlers import Server
from .schemas import ErrorBody, Health, Prediction, PredictResponse
from .settings import ServeSettings

ENV_CONFIG = "IMAGEFIT_SERVE_CONFIG"


def create_app(settings: ServeSettings, model: Model | None = None) -> FastAPI:
    """Build the FastAPI app serving the model in ``settings.run_path``.

    The model is loaded and its engine built (and warmed up) here, so a broken
    run folder fails at start-up rather than on the first request.

    Args:
        settings: Every server setting (:class:`ServeSettings`; its bounds are
            checked when it is built).
        model: An already loaded model (then ``settings.run_path`` is not read).

    Returns:
        The app; its ``state`` holds ``model``, ``settings``, ``batcher`` and ``server``.

    Raises:
        ArtifactError: the run folder cannot be loaded.
        ConfigError: ``settings`` is not a :class:`ServeSettings`, or names no run.
    """
    if not isinstance(settings, ServeSettings):
        raise invalid("settings", type(settings).__name__, "an imagefit.serve.settings.ServeSettings")
    if model is None:
        if not settings.run_path:
            raise invalid("run_path", settings.run_path, "a run folder")
        model = Model.load(settings.run_path)
    server = Server(settings, model)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        server.start()
        yield
        await server.aclose()

    app = FastAPI(
        title="imagefit",
        version=model.record.versions.get("imagefit", ""),
        summary=f"Image classifier '{model.path.name}' ({server.backbone}): {', '.join(model.classes)}",
        description=_description(settings),
        docs_url=None,
        redoc_url=None,  # ReDoc only exists as a CDN script; /docs covers it.
        lifespan=lifespan,
    )
    app.state.model = model
    app.state.settings = settings
    app.state.batcher = server.batcher
    app.state.server = server
    routes.add_error_handlers(app)
    routes.add_api_routes(app, server)
    routes.add_page_routes(app, routes.swagger_assets())
    return app


def _description(s: ServeSettings) -> str:
    return (
        "Upload photos to `POST /predict` (multipart field `files`) and get a label and calibrated "
        f"probabilities for each. Limits: body at most {s.max_upload_mb:g} MiB (413 `too_large`), at most "
        f"{s.max_files} images per request (413 `too_many_files`), images at most {s.max_pixels:,} pixels "
        f"(413 `too_many_pixels`), a request's images at most {s.max_request_pixels:,} decoded pixels together "
        "(413 `request_too_many_pixels`), JPEG/PNG/WebP/GIF/BMP/TIFF only (415 `unsupported_media_type`), "
        "readable images only (422 `invalid_image`), overload or decode budget spent (503 `busy`, `Retry-After`), "
        f"answered within {s.timeout_s:g} s (504 `timeout`). Every error is JSON "
        '`{"error": code, "detail": sentence}`.'
    )


# -- running it -----------------------------------------------------------------
def _announce(model: Model) -> None:
    # uvicorn prints the address (the real port, even for --port 0) right after.
    print(f"imagefit: serving {model.path} ({', '.join(model.classes)}): photo page at /, API docs at /docs", file=sys.stderr, flush=True)


def app_from_env() -> FastAPI:
    """App factory for worker processes (``uvicorn --factory``): settings from ``$IMAGEFIT_SERVE_CONFIG``."""
    raw = os.environ.get(ENV_CONFIG)
    if not raw:
        raise ImagefitError(f"${ENV_CONFIG} is not set; start the server with `imagefit serve RUN`")
    return create_app(ServeSettings.from_json(raw))


def serve(
    settings: ServeSettings,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    log_level: str = "info",
    access_log: bool = True,
) -> None:
    """Run the server until interrupted (``imagefit serve``).

    With ``workers > 1`` each worker process loads its own copy of the model
    (uvicorn needs an import string then, so settings travel in an environment
    variable). On a 2-core machine one worker is best: the engine already
    uses both cores for each batch.

    Raises:
        ImagefitError: bad settings, unreadable run folder, or port in use.
    """
    import uvicorn

    if workers < 1:
        raise invalid("workers", workers, "an integer >= 1")
    if workers == 1:
        app = create_app(settings)
        _announce(app.state.model)
        uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=access_log)
        return
    # Fail now, in the parent, rather than in every worker.
    _announce(Model.load(settings.run_path))
    os.environ[ENV_CONFIG] = settings.replace(run_path=str(Path(settings.run_path).resolve())).to_json()
    # Each worker's engine would otherwise use every core: share them out.
    os.environ.setdefault("IMAGEFIT_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))
    uvicorn.run(
        "imagefit.serve.app:app_from_env", factory=True, host=host, port=port, workers=workers, log_level=log_level, access_log=access_log
    )


__all__ = ["ErrorBody", "Health", "PredictResponse", "Prediction", "ServeSettings", "app_from_env", "create_app", "serve"]
