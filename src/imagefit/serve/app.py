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
too many images waiting (overload)          503     ``busy`` (+ ``Retry-After``)
not answered within ``timeout_s``           504     ``timeout``
==========================================  ======  ==========================

Inference is micro-batched across concurrent requests (see
:mod:`imagefit.serve.batcher`): images are decoded and preprocessed in a
thread pool, then the backbone engine (OpenVINO or ONNX Runtime on CPU) runs on the whole
batch in one call, then the head. ``batch_window_ms=0`` turns batching off.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import sys
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import Message

from ..data.loader import default_workers
from ..errors import ConfigError, ImagefitError
from ..model import Model
from .batcher import MicroBatcher
from .limits import Limits, ServeError, check_part_type, prepare_image

STATIC = Path(__file__).parent / "static"
FIELD = "files"
ENV_CONFIG = "IMAGEFIT_SERVE_CONFIG"


# -- response schemas (also the OpenAPI documentation) -------------------------
class Prediction(BaseModel):
    """The prediction for one uploaded image."""

    filename: str = Field(description="The name the client gave the file.")
    label: str = Field(description="The most probable class.")
    probability: float = Field(description="Calibrated probability of `label`.")
    probabilities: dict[str, float] = Field(description="Calibrated probability of every class (sums to 1).")


class ModelRef(BaseModel):
    """Which model answered."""

    run: str = Field(description="Run folder name.")
    backbone: str
    temperature: float = Field(description="Calibration temperature applied to the logits.")


class PredictResponse(BaseModel):
    """Predictions, in upload order."""

    predictions: list[Prediction]
    model: ModelRef


class ErrorBody(BaseModel):
    """Every error answer."""

    error: str = Field(description="Stable code, e.g. `too_many_pixels`.")
    detail: str = Field(description="What was wrong and what is allowed.")


class Health(BaseModel):
    """Liveness and batching counters."""

    status: str
    uptime_s: float
    pending: int = Field(description="Images accepted and not yet answered.")
    batching: bool
    model_calls: int
    images: int
    largest_batch: int
    model_busy_s: float = Field(description="Seconds spent in model calls since start (utilization = its growth rate).")


# -- settings -------------------------------------------------------------------
@dataclass
class ServeSettings:
    """Everything ``create_app`` needs, JSON-serializable for worker processes."""

    run_path: str
    max_upload_mb: float = 20.0
    max_pixels: int = 64_000_000
    max_files: int = 32
    batch_window_ms: float = 5.0
    max_batch: int = 4
    timeout_s: float = 30.0
    max_pending: int = 512


def _finite(obj: Any) -> Any:
    """Replace NaN/inf (valid in Python's JSON, not in strict JSON) with None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def _swagger_assets() -> Path | None:
    """Swagger UI 5 files from an installed package, or None.

    FastAPI's own ``/docs`` loads Swagger UI from a CDN, which fails offline.
    Swagger UI before 5 cannot render OpenAPI 3.1, so older bundles are ignored.
    """
    try:
        import swagger_ui_bundle  # type: ignore[import-not-found,import-untyped]
    except ImportError:
        return None
    path = Path(getattr(swagger_ui_bundle, "swagger_ui_path", ""))
    m = re.search(r"(\d+)\.\d+\.\d+$", path.name)
    if not (path / "swagger-ui-bundle.js").is_file() or (m is not None and int(m.group(1)) < 5):
        return None
    return path


_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Malformed multipart body (`bad_request`)."},
    413: {
        "model": ErrorBody,
        "description": "Body over `max_upload_mb` (`too_large`), more than `max_files` images (`too_many_files`), or an image over `max_pixels` (`too_many_pixels`, checked from the header: decompression bombs are never decoded).",
    },
    415: {
        "model": ErrorBody,
        "description": "Body not `multipart/form-data`, a part declared as a non-image type, or bytes that are not JPEG/PNG/WebP/GIF/BMP/TIFF (`unsupported_media_type`).",
    },
    422: {
        "model": ErrorBody,
        "description": "Empty body or no `files` field, e.g. a wrong field name (`no_files`); empty, truncated or corrupt image (`invalid_image`).",
    },
    503: {"model": ErrorBody, "description": "Too many images waiting for the model (`busy`); retry after `Retry-After` seconds."},
    504: {"model": ErrorBody, "description": "Not answered within `timeout_s` (`timeout`)."},
}

_PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [FIELD],
                    "properties": {
                        FIELD: {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "One or more images (repeat the field). JPEG, PNG, WebP, GIF, BMP or TIFF.",
                        }
                    },
                }
            }
        },
    }
}


def create_app(
    run_path: str | Path,
    *,
    max_upload_mb: float = 20.0,
    max_pixels: int = 64_000_000,
    max_files: int = 32,
    batch_window_ms: float = 5.0,
    max_batch: int = 4,
    timeout_s: float = 30.0,
    max_pending: int = 512,
    model: Model | None = None,
) -> FastAPI:
    """Build the FastAPI app serving the model in ``run_path``.

    The model is loaded and its engine built (and warmed up) here, so a broken
    run folder fails at start-up rather than on the first request.

    Args:
        run_path: A run folder (``model.safetensors`` + ``imagefit.json``).
        max_upload_mb: Largest request body in MiB (413).
        max_pixels: Largest image in pixels, width x height (413).
        max_files: Most images per request (413).
        batch_window_ms: Micro-batching wait window; 0 turns batching off.
        max_batch: Most images in one model call.
        timeout_s: Longest time to answer a request (504).
        max_pending: Most images waiting for the model before 503.
        model: An already loaded model for ``run_path`` (saves loading it twice).

    Returns:
        The app; its ``state`` holds ``model``, ``limits`` and ``batcher``.

    Raises:
        ArtifactError: the run folder cannot be loaded.
        ConfigError: a limit has an invalid value.
    """
    limits = Limits(max_upload_mb=max_upload_mb, max_pixels=max_pixels, max_files=max_files, timeout_s=timeout_s, max_pending=max_pending)
    if batch_window_ms < 0 or batch_window_ms > 1000:
        raise ConfigError(f"invalid batch_window_ms: received {batch_window_ms!r}; allowed: 0 (no batching) to 1000")
    if max_batch < 1:
        raise ConfigError(f"invalid max_batch: received {max_batch!r}; allowed: an integer >= 1")
    if model is None:
        model = Model.load(run_path)
    pre = model.preprocess
    engine = model.engine
    # Warm-up: the first engine run allocates its buffers; no client should pay that.
    engine(np.zeros((1, pre.input_size, pre.input_size, 3), np.uint8))

    def infer(x: np.ndarray) -> np.ndarray:
        feats = engine(x)
        return model.head_probs(feats[:, None, :])

    batcher = MicroBatcher(infer, window_ms=batch_window_ms, max_batch=max_batch, max_pending=max_pending)
    decoders = ThreadPoolExecutor(default_workers(), thread_name_prefix="imagefit-serve-decode")
    backbone_name = str(model.meta["backbone"]["name"])
    model_ref = ModelRef(run=model.path.name, backbone=backbone_name, temperature=model.temperature)
    started = time.monotonic()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await batcher.aclose()

    swagger = _swagger_assets()
    app = FastAPI(
        title="imagefit",
        version=str(model.meta.get("versions", {}).get("imagefit", "")),
        summary=f"Image classifier '{model.path.name}' ({backbone_name}): {', '.join(model.classes)}",
        description=(
            "Upload photos to `POST /predict` (multipart field `files`) and get a label and calibrated "
            "probabilities for each. Limits: body at most "
            f"{limits.max_upload_mb:g} MiB (413 `too_large`), at most {limits.max_files} images per request "
            f"(413 `too_many_files`), images at most {limits.max_pixels:,} pixels (413 `too_many_pixels`), "
            "JPEG/PNG/WebP/GIF/BMP/TIFF only (415 `unsupported_media_type`), readable images only (422 "
            f"`invalid_image`), answered within {limits.timeout_s:g} s (504 `timeout`). Every error is JSON "
            '`{"error": code, "detail": sentence}`.'
        ),
        docs_url=None,
        redoc_url=None,  # ReDoc only exists as a CDN script; /docs covers it.
        lifespan=lifespan,
    )
    app.state.model = model
    app.state.limits = limits
    app.state.batcher = batcher

    # -- errors: one JSON shape for everything --------------------------------
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

    # -- API -------------------------------------------------------------------
    @app.get("/health", response_model=Health, tags=["service"], summary="Liveness and batching counters")
    async def health() -> Health:
        s = batcher.stats
        return Health(
            status="ok",
            uptime_s=round(time.monotonic() - started, 3),
            pending=batcher.pending,
            batching=batcher.batching,
            model_calls=s.calls,
            images=s.images,
            largest_batch=s.largest,
            model_busy_s=round(s.busy_s, 3),
        )

    @app.get("/model", tags=["service"], summary="Classes, backbone, calibration, validation metrics and limits")
    async def model_info() -> JSONResponse:
        meta = model.meta
        body = {
            "run": model.path.name,
            "classes": model.classes,
            "backbone": meta["backbone"],
            "preprocess": meta["preprocess"],
            "temperature": model.temperature,
            "metrics": meta.get("metrics", {}),
            "train_counts": meta.get("train_counts"),
            "created": meta.get("created"),
            "versions": meta.get("versions"),
            "engine": engine.kind,
            "limits": limits.to_dict(),
            "batching": {"window_ms": batch_window_ms, "max_batch": max_batch},
        }
        return JSONResponse(_finite(body))

    @app.post(
        "/predict",
        response_model=PredictResponse,
        responses=_ERROR_RESPONSES,
        tags=["predict"],
        summary="Classify one or more images",
        description=(
            "Send `multipart/form-data` with one or more parts named `files`. The answer lists one prediction "
            "per image, in upload order; if any image is refused, the whole request is refused with the status "
            "and error code of the first problem found (see the responses below)."
        ),
        openapi_extra=_PREDICT_BODY,
    )
    async def predict(request: Request) -> PredictResponse:
        try:
            return await asyncio.wait_for(_predict(request), limits.timeout_s)
        except asyncio.TimeoutError:
            raise ServeError(504, "timeout", f"the request was not answered within {limits.timeout_s:g} s") from None

    async def _predict(request: Request) -> PredictResponse:
        files = await _read_files(request, limits)
        loop = asyncio.get_running_loop()
        arrays = await asyncio.gather(
            *(loop.run_in_executor(decoders, prepare_image, data, name, pre, limits.max_pixels) for name, data in files)
        )
        probs = await batcher.submit(np.stack(arrays))
        preds = []
        for (name, _), row in zip(files, probs):
            k = int(row.argmax())
            preds.append(
                Prediction(
                    filename=name,
                    label=model.classes[k],
                    probability=float(row[k]),
                    probabilities={c: float(row[j]) for j, c in enumerate(model.classes)},
                )
            )
        return PredictResponse(predictions=preds, model=model_ref)

    # -- page and docs ---------------------------------------------------------
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

    return app


async def _read_files(request: Request, limits: Limits) -> list[tuple[str, bytes]]:
    """Parse the multipart body into ``(filename, bytes)`` pairs, enforcing the limits."""
    ctype = request.headers.get("content-type", "")
    length = request.headers.get("content-length")
    if length is not None:
        try:
            n = int(length)
        except ValueError:
            raise ServeError(400, "bad_request", f"invalid Content-Length {length!r}") from None
        # Refused before reading a byte: a client cannot make us buffer it.
        if n > limits.max_bytes:
            raise ServeError(413, "too_large", f"the body is {n / 2**20:.1f} MiB; the limit is {limits.max_upload_mb:g} MiB")
    media = ctype.split(";")[0].strip().lower()
    if media != "multipart/form-data":
        if not media and length in (None, "0"):
            raise ServeError(422, "no_files", f"empty request: send multipart/form-data with one or more images in the field '{FIELD}'")
        raise ServeError(
            415,
            "unsupported_media_type",
            f"the body is {media or 'untyped'!r}; send multipart/form-data with one or more images in the field '{FIELD}'",
        )

    # Chunked bodies have no Content-Length: count bytes as they arrive.
    received = 0
    receive = request.receive

    async def limited_receive() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limits.max_bytes:
                raise ServeError(413, "too_large", f"the body is over the limit of {limits.max_upload_mb:g} MiB")
        return message

    limited = Request(request.scope, limited_receive)
    try:
        form = await limited.form(max_files=limits.max_files, max_fields=64, max_part_size=64 * 1024)
    except ClientDisconnect:
        # Nobody is left to read the answer; a 4xx keeps it out of the error log.
        raise ServeError(400, "bad_request", "the client disconnected during the upload") from None
    except StarletteHTTPException as exc:
        # Starlette reports multipart limit and syntax errors as a 400 with a message.
        if "too many files" in str(exc.detail).lower():
            raise ServeError(
                413, "too_many_files", f"more than {limits.max_files} files in one request; send at most {limits.max_files}"
            ) from None
        raise ServeError(400, "bad_request", f"malformed multipart body: {exc.detail}") from None
    try:
        entries = form.getlist(FIELD)
        if not entries:
            others = sorted(set(form.keys()))
            got = f"; received field(s) {', '.join(repr(k) for k in others[:10])}" if others else "; the body has no parts"
            raise ServeError(422, "no_files", f"no field '{FIELD}'{got}. Send each image as a part named '{FIELD}'")
        if len(entries) > limits.max_files:
            raise ServeError(413, "too_many_files", f"{len(entries)} files in one request; send at most {limits.max_files}")
        out = []
        for i, entry in enumerate(entries):
            if not isinstance(entry, UploadFile):
                raise ServeError(422, "no_files", f"field '{FIELD}' #{i + 1} is text, not a file")
            name = os.path.basename(entry.filename or "") or f"file{i + 1}"
            check_part_type(name, entry.content_type)
            data = await entry.read()
            if not data:
                raise ServeError(422, "invalid_image", f"{name}: empty file")
            out.append((name, data))
        return out
    finally:
        await form.close()


# -- running it -----------------------------------------------------------------
def _announce(model: Model) -> None:
    # uvicorn prints the address (the real port, even for --port 0) right after.
    print(f"imagefit: serving {model.path} ({', '.join(model.classes)}): photo page at /, API docs at /docs", file=sys.stderr, flush=True)


def app_from_env() -> FastAPI:
    """App factory for worker processes (``uvicorn --factory``): settings from ``$IMAGEFIT_SERVE_CONFIG``."""
    raw = os.environ.get(ENV_CONFIG)
    if not raw:
        raise ImagefitError(f"${ENV_CONFIG} is not set; start the server with `imagefit serve RUN`")
    s = ServeSettings(**json.loads(raw))
    return create_app(
        s.run_path,
        max_upload_mb=s.max_upload_mb,
        max_pixels=s.max_pixels,
        max_files=s.max_files,
        batch_window_ms=s.batch_window_ms,
        max_batch=s.max_batch,
        timeout_s=s.timeout_s,
        max_pending=s.max_pending,
    )


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
        raise ConfigError(f"invalid workers: received {workers!r}; allowed: an integer >= 1")
    if workers == 1:
        app = create_app(
            settings.run_path,
            max_upload_mb=settings.max_upload_mb,
            max_pixels=settings.max_pixels,
            max_files=settings.max_files,
            batch_window_ms=settings.batch_window_ms,
            max_batch=settings.max_batch,
            timeout_s=settings.timeout_s,
            max_pending=settings.max_pending,
        )
        _announce(app.state.model)
        uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=access_log)
        return
    # Fail now, in the parent, rather than in every worker.
    _announce(Model.load(settings.run_path))
    os.environ[ENV_CONFIG] = json.dumps({**settings.__dict__, "run_path": str(Path(settings.run_path).resolve())})
    # Each worker's engine would otherwise use every core: share them out.
    os.environ.setdefault("IMAGEFIT_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))
    uvicorn.run(
        "imagefit.serve.app:app_from_env", factory=True, host=host, port=port, workers=workers, log_level=log_level, access_log=access_log
    )


__all__ = ["ErrorBody", "Health", "PredictResponse", "Prediction", "ServeSettings", "app_from_env", "create_app", "serve"]
