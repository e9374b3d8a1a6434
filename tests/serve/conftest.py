"""Fixtures for the server tests: one app on the session's trained model, test images."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="serving needs the serve extra (fastapi)")
pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx")

from fastapi import FastAPI
from fastapi.testclient import TestClient

SAMPLE = Path(__file__).resolve().parents[2] / "src" / "imagefit" / "sample_data"
CAT = SAMPLE / "val" / "cats" / "cat.2000.jpg"
DOG = SAMPLE / "val" / "dogs" / "dog.2000.jpg"

# Small limits so the tests can cross them cheaply.
LIMITS = {"max_upload_mb": 2.0, "max_files": 8, "max_pixels": 50_000_000, "timeout_s": 30.0}


@pytest.fixture(scope="session")
def serve_app(trained_run: Path) -> FastAPI:
    """The app on the session's lite0 run, with small limits."""
    from imagefit.serve.app import create_app
    from imagefit.serve.settings import ServeSettings

    return create_app(ServeSettings(str(trained_run), batch_window_ms=5.0, max_batch=16, **LIMITS))


@pytest.fixture(scope="session")
def client(serve_app: FastAPI) -> Iterator[TestClient]:
    """A TestClient kept open for the session (one event loop, lifespan run)."""
    with TestClient(serve_app) as c:
        yield c


@pytest.fixture(scope="session")
def cat_bytes() -> bytes:
    """The bundled validation cat photo."""
    return CAT.read_bytes()


def png_bytes(size: tuple[int, int] = (8, 8), color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A small valid PNG."""
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def png_bomb(width: int = 20_000, height: int = 20_000) -> bytes:
    """A valid all-black grayscale PNG of ``width x height`` in ~0.4 MB, built row by row.

    Decoding it would take 400 MB (1.2 GB as RGB); building it never holds more
    than one 20 kB row, unlike ``Image.new`` at that size.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\0" * (width + 1)  # filter byte + one byte per pixel
    comp = zlib.compressobj(6)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.fixture(scope="session")
def bomb_png() -> bytes:
    """A 20,000 x 20,000 PNG (400 megapixels) of a few hundred kB."""
    return png_bomb()


def assert_cat(client: TestClient, cat: bytes) -> None:
    """The server still answers a good request correctly."""
    r = client.post("/predict", files={"files": ("cat.2000.jpg", cat, "image/jpeg")})
    assert r.status_code == 200, r.text
    pred = r.json()["predictions"][0]
    assert pred["label"] == "cats"
