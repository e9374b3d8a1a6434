"""The server's request and response schemas: the OpenAPI documentation says exactly what it accepts and answers."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

FIELD = "files"
# Parts declared application/octet-stream (curl's default) are accepted too when their bytes are one of these.
IMAGE_TYPES = "image/jpeg, image/png, image/webp, image/gif, image/bmp, image/tiff"


class Prediction(BaseModel):
    """The prediction for one uploaded image.

    Built in one place (:func:`imagefit.serve.handlers.predictions`): a new answer
    (e.g. an out-of-distribution "unknown") is a new field here, filled there.
    """

    filename: str = Field(description="The name the client gave the file.")
    label: str = Field(description="The most probable class.")
    probability: float = Field(description="Calibrated probability of `label`.")
    probabilities: dict[str, float] = Field(description="Calibrated probability of every class (sums to 1).")
    unknown: bool | None = Field(
        None,
        description="True when the photo looks unlike the training photos (its answer is then a guess among the classes); "
        "null when the model was trained without an unknown-photo detector.",
    )
    unknown_score: float | None = Field(
        None,
        description="Cosine distance of the photo's features to the nearest training photo's (0..2); above the run's threshold is unknown.",
    )


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
    decoding_pixels: int = Field(description="Pixels admitted for decoding and not yet decoded (the decode budget in use).")


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Malformed multipart body (`bad_request`)."},
    413: {
        "model": ErrorBody,
        "description": "Body over `max_upload_mb` (`too_large`), more than `max_files` images (`too_many_files`), an image over "
        "`max_pixels` (`too_many_pixels`), or images decoding to more than `max_request_pixels` together "
        "(`request_too_many_pixels`); both checked from the headers: decompression bombs are never decoded.",
    },
    415: {
        "model": ErrorBody,
        "description": "Body not `multipart/form-data`, a part declared as a non-image type, or bytes that are not JPEG/PNG/WebP/GIF/BMP/TIFF (`unsupported_media_type`).",
    },
    422: {
        "model": ErrorBody,
        "description": "Empty body or no `files` field, e.g. a wrong field name (`no_files`); empty, truncated or corrupt image (`invalid_image`).",
    },
    503: {
        "model": ErrorBody,
        "description": "Too many images waiting for the model, or the server's decode budget (`max_inflight_pixels`) "
        "is spent (`busy`); retry after `Retry-After` seconds.",
        "headers": {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}},
    },
    504: {"model": ErrorBody, "description": "Not answered within `timeout_s` (`timeout`)."},
}


def predict_body(max_files: int) -> dict[str, Any]:
    """The ``/predict`` request body as the server accepts it (FastAPI cannot infer it: the body is parsed by hand)."""
    files = {
        "type": "array",
        "minItems": 1,
        "maxItems": max_files,
        "items": {"type": "string", "format": "binary", "contentMediaType": "image/*"},
        "description": f"One to {max_files} images (repeat the field). JPEG, PNG, WebP, GIF, BMP or TIFF.",
    }
    body = {"type": "object", "required": [FIELD], "properties": {FIELD: files}}
    encoding = {FIELD: {"contentType": IMAGE_TYPES}}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": body, "encoding": encoding}}}}


__all__ = ["ERROR_RESPONSES", "FIELD", "ErrorBody", "Health", "ModelRef", "PredictResponse", "Prediction", "predict_body"]
