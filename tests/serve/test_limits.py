"""Bad requests get their documented 4xx JSON answer, and the server keeps serving."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from imagefit.serve.app import create_app
from imagefit.serve.settings import ServeSettings

from .conftest import assert_cat, png_bytes


def _jpeg(name: str, data: bytes, ctype: str = "image/jpeg") -> dict[str, Any]:
    return {"files": {"files": (name, data, ctype)}}


def _chunks(total: int) -> Iterator[bytes]:
    # A generator body is sent chunked, without Content-Length.
    boundary = b'--x1\r\nContent-Disposition: form-data; name="files"; filename="big.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
    yield boundary
    for _ in range(total // 65536):
        yield b"\xff" * 65536
    yield b"\r\n--x1--\r\n"


CASES: dict[str, tuple[Callable[[bytes, bytes], dict[str, Any]], int, str]] = {
    # name: (request kwargs from (cat, bomb), status, error code)
    "empty body": (lambda cat, bomb: {}, 422, "no_files"),
    "empty multipart": (
        lambda cat, bomb: {"content": b"", "headers": {"content-type": "multipart/form-data; boundary=x1"}},
        422,
        "no_files",
    ),
    "wrong field name": (lambda cat, bomb: {"files": {"file": ("cat.jpg", cat, "image/jpeg")}}, 422, "no_files"),
    "text instead of file": (lambda cat, bomb: {"files": [("files", (None, "not a file"))]}, 422, "no_files"),
    "non-image bytes": (
        lambda cat, bomb: _jpeg("notes.jpg", b"these are not the pixels you are looking for"),
        415,
        "unsupported_media_type",
    ),
    "non-image content type": (lambda cat, bomb: _jpeg("notes.txt", b"hello", "text/plain"), 415, "unsupported_media_type"),
    "raw image body": (lambda cat, bomb: {"content": cat, "headers": {"content-type": "image/jpeg"}}, 415, "unsupported_media_type"),
    "truncated jpeg": (lambda cat, bomb: _jpeg("half.jpg", cat[: len(cat) // 2]), 422, "invalid_image"),
    "empty file": (lambda cat, bomb: _jpeg("empty.jpg", b""), 422, "invalid_image"),
    "decompression bomb 20000x20000 png": (lambda cat, bomb: _jpeg("bomb.png", bomb, "image/png"), 413, "too_many_pixels"),
    "100 files": (
        lambda cat, bomb: {"files": [("files", (f"{i}.png", png_bytes(), "image/png")) for i in range(100)]},
        413,
        "too_many_files",
    ),
    "9 files (limit 8)": (
        lambda cat, bomb: {"files": [("files", (f"{i}.jpg", cat, "image/jpeg")) for i in range(9)]},
        413,
        "too_many_files",
    ),
    "body over max_upload_mb": (lambda cat, bomb: _jpeg("big.jpg", b"\xff" * (3 << 20)), 413, "too_large"),
    "chunked body over max_upload_mb": (
        lambda cat, bomb: {"content": _chunks(3 << 20), "headers": {"content-type": "multipart/form-data; boundary=x1"}},
        413,
        "too_large",
    ),
    "malformed multipart": (
        lambda cat, bomb: {"content": b"garbage", "headers": {"content-type": "multipart/form-data; boundary=x1"}},
        400,
        "bad_request",
    ),
    "multipart without boundary": (
        lambda cat, bomb: {"content": b"garbage", "headers": {"content-type": "multipart/form-data"}},
        400,
        "bad_request",
    ),
    "one bad among good": (
        lambda cat, bomb: {"files": [("files", ("a.jpg", cat, "image/jpeg")), ("files", ("b.jpg", b"nope", "image/jpeg"))]},
        415,
        "unsupported_media_type",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_request_then_good_request(name: str, client: TestClient, cat_bytes: bytes, bomb_png: bytes) -> None:
    build, status, error = CASES[name]
    r = client.post("/predict", **build(cat_bytes, bomb_png))
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"] == error
    assert isinstance(body["detail"], str) and body["detail"]
    assert_cat(client, cat_bytes)
    assert client.get("/health").json()["pending"] == 0


def test_bomb_is_refused_from_its_header(client: TestClient, bomb_png: bytes) -> None:
    """Refusing the bomb must not decode it (400 megapixels would take seconds and GBs)."""
    start = time.perf_counter()
    r = client.post("/predict", files={"files": ("bomb.png", bomb_png, "image/png")})
    assert r.status_code == 413
    assert "20000x20000" in r.json()["detail"]
    assert time.perf_counter() - start < 2.0


def test_max_pixels_is_configurable(serve_app: FastAPI, cat_bytes: bytes) -> None:
    app = create_app(ServeSettings(max_pixels=100 * 100), model=serve_app.state.model)
    with TestClient(app) as c:
        assert c.post("/predict", files={"files": ("small.png", png_bytes((100, 100)), "image/png")}).status_code == 200
        r = c.post("/predict", files={"files": ("cat.jpg", cat_bytes, "image/jpeg")})
    assert r.status_code == 413 and r.json()["error"] == "too_many_pixels"


def test_timeout_is_504_and_server_recovers(serve_app: FastAPI, cat_bytes: bytes) -> None:
    app = create_app(ServeSettings(timeout_s=0.3), model=serve_app.state.model)
    batcher = app.state.batcher
    fast = batcher.infer

    def slow(x: np.ndarray) -> np.ndarray:
        time.sleep(0.8)
        return fast(x)

    with TestClient(app) as c:
        batcher.infer = slow
        r = c.post("/predict", files={"files": ("cat.jpg", cat_bytes, "image/jpeg")})
        assert r.status_code == 504, r.text
        assert r.json()["error"] == "timeout"
        batcher.infer = fast
        time.sleep(0.8)  # the slow call still holds the inference thread
        assert_cat(c, cat_bytes)
        assert c.get("/health").json()["pending"] == 0


def test_busy_is_503_with_retry_after(serve_app: FastAPI, cat_bytes: bytes) -> None:
    """Past max_pending waiting images, requests are refused instead of queued without bound."""
    import httpx

    app = create_app(ServeSettings(max_files=1, max_pending=1, batch_window_ms=0), model=serve_app.state.model)
    batcher = app.state.batcher
    fast = batcher.infer

    def slow(x: np.ndarray) -> np.ndarray:
        time.sleep(0.3)
        return fast(x)

    batcher.infer = slow

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            return await asyncio.gather(*[c.post("/predict", files={"files": ("c.jpg", cat_bytes, "image/jpeg")}) for _ in range(4)])

    codes = sorted(r.status_code for r in asyncio.run(run()))
    assert codes[0] == 200 and 503 in codes, codes
    busy = next(r for r in asyncio.run(run()) if r.status_code == 503)
    assert busy.json()["error"] == "busy" and busy.headers["retry-after"] == "1"
