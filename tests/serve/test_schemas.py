"""The OpenAPI schema says what the server accepts and answers: a schema-based fuzzer finds no mismatch."""

from __future__ import annotations

import io
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

schemathesis = pytest.importorskip("schemathesis", reason="the dev extra installs schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from schemathesis.transport.serialization import Binary  # noqa: E402


def _image(fmt: str, width: int, height: int, color: tuple[int, int, int]) -> Binary:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, format=fmt)
    return Binary(buf.getvalue())


# The schema says each part is a JPEG/PNG/WebP/GIF/BMP/TIFF image (`encoding.contentType`), which JSON
# Schema cannot express byte by byte; so the fuzzer is told how such a file is made. Every other
# aspect (counts, field names, missing parts, types, negative cases) is left to schemathesis.
IMAGES = st.builds(
    _image,
    st.sampled_from(["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"]),
    st.integers(1, 48),
    st.integers(1, 48),
    st.tuples(*[st.integers(0, 255)] * 3),
)
schemathesis.openapi.format("binary", IMAGES)


OPERATIONS = ["GET /health", "GET /model", "POST /predict"]


@pytest.mark.parametrize("label", OPERATIONS)
def test_api_conforms_to_its_schema(serve_app: FastAPI, label: str) -> None:
    """Schemathesis generates requests from the schema (valid and invalid) and checks every answer against it."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", serve_app)
    ops = {op.label: op for op in (r.ok() for r in schema.get_all_operations())}
    assert sorted(ops) == OPERATIONS  # a new route gets fuzzed too: add it here
    op = ops[label]

    # schemathesis's pytest plugin does not work with this pytest; its hypothesis strategy does.
    @given(case=op.as_strategy())
    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(case: Any) -> None:
        case.call_and_validate()

    check()


def test_predict_schema_states_the_limits(client: TestClient) -> None:
    op = client.get("/openapi.json").json()["paths"]["/predict"]["post"]
    content = op["requestBody"]["content"]["multipart/form-data"]
    files = content["schema"]["properties"]["files"]
    assert op["requestBody"]["required"] is True and content["schema"]["required"] == ["files"]
    assert (files["minItems"], files["maxItems"]) == (1, 8)  # the test app's max_files
    assert files["items"]["format"] == "binary"
    assert "image/png" in content["encoding"]["files"]["contentType"]
    assert "Retry-After" in op["responses"]["503"]["headers"]
    assert "request_too_many_pixels" in op["responses"]["413"]["description"]
