"""Request limits of the prediction server and the checks that enforce them.

Every refusal is a :class:`ServeError`: an HTTP status, a short machine-readable
``error`` code and a human ``detail``. The app turns it into the JSON body
``{"error": ..., "detail": ...}``; nothing a client sends can make the server
answer 500 or stop serving.
"""

from __future__ import annotations

import io
import math
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..data.load import decode_array
from ..data.transforms import Preprocess
from ..errors import BadImageError, ImagefitError

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


def jpeg_draft_pixels(width: int, height: int, keep: int) -> int:
    """Pixels a JPEG decodes to when the decoder may downscale by 1/2, 1/4 or 1/8 keeping both sides >= ``keep``.

    The same rule as Pillow's ``draft`` (which :func:`imagefit.data.load.decode_array` uses).
    """
    scale = 1
    while scale < 8 and width / (scale * 2) >= keep and height / (scale * 2) >= keep:
        scale *= 2
    return math.ceil(width / scale) * math.ceil(height / scale)


def probe_image(data: bytes, filename: str, pre: Preprocess, max_pixels: int) -> tuple[int, int, int]:
    """Read one upload's header (no pixel is decoded) and refuse what must never be decoded.

    Returns:
        ``(width, height, decode_pixels)``: JPEGs decode at a reduced size
        (:func:`jpeg_draft_pixels`), others at full size.

    Raises:
        ServeError: 415 not an image or an unaccepted format, 413 over
            ``max_pixels``, 422 corrupt header.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS) as probe:
                w, h = probe.size
                fmt = probe.format
    except UnidentifiedImageError:
        raise ServeError(
            415, "unsupported_media_type", f"{filename}: not an image in an accepted format ({', '.join(ACCEPTED_FORMATS)})"
        ) from None
    except Exception as exc:
        raise ServeError(422, "invalid_image", f"{filename}: corrupt image header ({type(exc).__name__}: {str(exc)[:100]})") from None
    if w < 1 or h < 1:
        raise ServeError(422, "invalid_image", f"{filename}: invalid size {w}x{h}")
    if w * h > max_pixels:
        raise ServeError(
            413, "too_many_pixels", f"{filename}: {w}x{h} is {w * h:,} pixels; the limit is {max_pixels:,} (possible decompression bomb)"
        )
    cost = jpeg_draft_pixels(w, h, pre.resize_size) if fmt in ("JPEG", "MPO") else w * h
    return w, h, cost


def prepare_image(data: bytes, filename: str, pre: Preprocess, max_pixels: int) -> np.ndarray:
    """Decode and preprocess one upload whose header :func:`probe_image` accepted (runs in a decode thread).

    The decode is the library's (EXIF orientation, any mode to RGB, JPEG draft
    mode), so the server predicts exactly what
    :meth:`imagefit.model.Model.predict` predicts for the same file.

    Args:
        data: The file's bytes (not empty).
        filename: For error messages.
        pre: The model's preprocessing.
        max_pixels: Largest accepted width x height.

    Returns:
        The uint8 ``[S, S, 3]`` engine input (the engine normalizes in its graph).

    Raises:
        ServeError: 422 truncated or corrupt.
    """
    try:
        return pre.pixels(decode_array(data, draft_size=pre.resize_size, max_pixels=max_pixels))
    except BadImageError as exc:
        raise ServeError(422, "invalid_image", f"{filename}: {exc}") from None
    except Exception as exc:
        raise ServeError(422, "invalid_image", f"{filename}: cannot be decoded ({type(exc).__name__})") from None


__all__ = ["ACCEPTED_FORMATS", "ServeError", "check_part_type", "jpeg_draft_pixels", "prepare_image", "probe_image"]
