"""Request limits of the prediction server and the checks that enforce them.

Every refusal is a :class:`ServeError`: an HTTP status, a short machine-readable
``error`` code and a human ``detail``. The app turns it into the JSON body
``{"error": ..., "detail": ...}``; nothing a client sends can make the server
answer 500 or stop serving.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..data.load import decode_array
from ..data.transforms import Preprocess
from ..errors import BadImageError, ConfigError, ImagefitError

# Formats a browser or phone produces. Pillow can open many more (EPS even runs
# Ghostscript), so anything else is refused before a decoder sees it.
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")  # JPEG covers MPO (phone JPEGs)
# Declared part types accepted before sniffing: browsers send image/*, curl and
# many scripts send application/octet-stream (or nothing) for any file.
ACCEPTED_PART_TYPES = ("image/", "application/octet-stream")


class ServeError(ImagefitError):
    """A request the server refuses, with the HTTP status to answer it with.

    Args:
        status: HTTP status code (4xx for the client's fault, 503/504 for load).
        error: Short stable code, e.g. ``too_many_pixels``.
        detail: One sentence saying what was wrong and what is allowed.
        headers: Extra response headers (``Retry-After`` on 503).
    """

    def __init__(self, status: int, error: str, detail: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = headers or {}

    def body(self) -> dict[str, str]:
        """The JSON error body."""
        return {"error": self.error, "detail": self.detail}


@dataclass
class Limits:
    """What one request may contain and how long it may take.

    Attributes:
        max_upload_mb: Largest request body, in MiB (413 ``too_large``).
        max_pixels: Largest image, width x height (413 ``too_many_pixels``):
            decompression bombs are refused from the header, before decoding.
        max_files: Most images in one request (413 ``too_many_files``).
        timeout_s: Longest time to answer one request (504 ``timeout``).
        max_pending: Most images waiting for the model across all requests
            (503 ``busy``, with ``Retry-After``), so memory stays bounded under overload.
    """

    max_upload_mb: float = 20.0
    max_pixels: int = 64_000_000
    max_files: int = 32
    timeout_s: float = 30.0
    max_pending: int = 512

    def __post_init__(self) -> None:
        # Checked here so a bad CLI flag fails at start-up, not on the first request.
        if not self.max_upload_mb > 0:
            raise ConfigError(f"invalid max_upload_mb: received {self.max_upload_mb!r}; allowed: a positive number")
        if self.max_pixels < 1:
            raise ConfigError(f"invalid max_pixels: received {self.max_pixels!r}; allowed: an integer >= 1")
        if self.max_files < 1:
            raise ConfigError(f"invalid max_files: received {self.max_files!r}; allowed: an integer >= 1")
        if not self.timeout_s > 0:
            raise ConfigError(f"invalid timeout_s: received {self.timeout_s!r}; allowed: a positive number")
        if self.max_pending < self.max_files:
            raise ConfigError(f"invalid max_pending: received {self.max_pending!r}; allowed: at least max_files ({self.max_files})")

    @property
    def max_bytes(self) -> int:
        """:attr:`max_upload_mb` in bytes."""
        return int(self.max_upload_mb * 1024 * 1024)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (shown by ``GET /model``)."""
        return asdict(self)


def check_part_type(filename: str, content_type: str | None) -> None:
    """Refuse a part whose declared type is clearly not an image (415).

    Raises:
        ServeError: 415 ``unsupported_media_type``.
    """
    ct = (content_type or "").split(";")[0].strip().lower()
    if ct and not ct.startswith(ACCEPTED_PART_TYPES):
        raise ServeError(
            415,
            "unsupported_media_type",
            f"{filename}: content type {ct!r} is not an image; send image/jpeg, image/png, image/webp, image/gif, image/bmp or image/tiff",
        )


def prepare_image(data: bytes, filename: str, pre: Preprocess, max_pixels: int) -> np.ndarray:
    """Check and preprocess one uploaded image (runs in a worker thread).

    The header is read first, so an oversized image is refused without decoding
    a single pixel; the decode itself is the library's (EXIF orientation, any
    mode to RGB, JPEG draft mode), so the server predicts exactly what
    :meth:`imagefit.model.Model.predict` predicts for the same file.

    Args:
        data: The file's bytes (not empty).
        filename: For error messages.
        pre: The model's preprocessing.
        max_pixels: Largest accepted width x height.

    Returns:
        The uint8 ``[S, S, 3]`` engine input (the engine normalizes in its graph).

    Raises:
        ServeError: 415 not an image or an unaccepted format, 413 too many
            pixels, 422 truncated or corrupt.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS) as probe:
                w, h = probe.size
    except UnidentifiedImageError:
        raise ServeError(
            415, "unsupported_media_type", f"{filename}: not an image in an accepted format ({', '.join(ACCEPTED_FORMATS)})"
        ) from None
    except Exception as exc:
        raise ServeError(422, "invalid_image", f"{filename}: corrupt image header ({type(exc).__name__}: {str(exc)[:100]})") from None
    if w * h > max_pixels:
        raise ServeError(
            413, "too_many_pixels", f"{filename}: {w}x{h} is {w * h:,} pixels; the limit is {max_pixels:,} (possible decompression bomb)"
        )
    try:
        return pre.pixels(decode_array(data, draft_size=pre.resize_size, max_pixels=max_pixels))
    except BadImageError as exc:
        raise ServeError(422, "invalid_image", f"{filename}: {exc}") from None
    except Exception as exc:
        raise ServeError(422, "invalid_image", f"{filename}: cannot be decoded ({type(exc).__name__})") from None


__all__ = ["ACCEPTED_FORMATS", "Limits", "ServeError", "check_part_type", "prepare_image"]
