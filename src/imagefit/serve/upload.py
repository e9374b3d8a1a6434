"""Reading the uploaded images out of a multipart body, within the request limits.

The body is parsed by hand (not by a FastAPI ``File`` parameter) so that every
limit is enforced while reading, with its own status and error code.
"""

from __future__ import annotations

import os

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import Message

from .limits import ServeError, check_part_type
from .schemas import FIELD
from .settings import ServeSettings


async def read_files(request: Request, limits: ServeSettings) -> list[tuple[str, bytes]]:
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


__all__ = ["read_files"]
