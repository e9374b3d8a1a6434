"""The server's endpoints on a real (tiny) trained model: health, model, predict, page, docs."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import imagefit
from imagefit.serve import app as app_module
from imagefit.serve import routes
from imagefit.serve.app import create_app
from imagefit.serve.settings import ServeSettings

from .conftest import CAT, DOG

STATIC = Path(app_module.__file__).parent / "static"


def test_health(client: TestClient) -> None:
    r = client.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert body["batching"] is True
    assert body["pending"] == 0


def test_model_info(client: TestClient, trained_run: Path) -> None:
    r = client.get("/model")
    assert r.status_code == 200
    body = r.json()
    meta = json.loads((trained_run / "imagefit.json").read_text())
    assert body["classes"] == ["cats", "dogs"]
    assert body["backbone"]["name"] == "lite0"
    assert body["temperature"] == pytest.approx(meta["temperature"])
    assert body["metrics"]["val"]["accuracy"] == pytest.approx(meta["metrics"]["val"]["accuracy"])
    assert body["limits"]["max_files"] == 8
    assert body["batching"] == {"window_ms": 5.0, "max_batch": 16}


def test_predict_cat(client: TestClient, cat_bytes: bytes) -> None:
    r = client.post("/predict", files={"files": ("cat.2000.jpg", cat_bytes, "image/jpeg")})
    assert r.status_code == 200, r.text
    body = r.json()
    (pred,) = body["predictions"]
    assert pred["filename"] == "cat.2000.jpg"
    assert pred["label"] == "cats"
    assert pred["probability"] > 0.5
    assert pred["probability"] == pytest.approx(pred["probabilities"]["cats"])
    assert sum(pred["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert body["model"]["backbone"] == "lite0"


def test_predict_matches_library(client: TestClient, trained_run: Path) -> None:
    """The server decodes and preprocesses exactly as Model.predict does."""
    expected = imagefit.load(trained_run).predict([CAT, DOG])
    files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in (CAT, DOG)]
    r = client.post("/predict", files=files)
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    assert [p["filename"] for p in preds] == [CAT.name, DOG.name]  # upload order
    assert [p["label"] for p in preds] == ["cats", "dogs"]
    for got, want in zip(preds, expected.records):
        for c in ("cats", "dogs"):
            assert got["probabilities"][c] == pytest.approx(want["probabilities"][c], abs=1e-4)


def test_predict_uses_temperature(serve_app: FastAPI, trained_run: Path, tmp_path: Path) -> None:
    """Probabilities are calibrated with the run's temperature."""
    from _runs import edited_run

    run = edited_run(trained_run, tmp_path / "hot", temperature=4.0)
    want = imagefit.load(run).predict([CAT]).records[0]["probability"]
    with TestClient(create_app(ServeSettings(str(run)))) as c:
        got = c.post("/predict", files={"files": ("cat.jpg", CAT.read_bytes(), "image/jpeg")}).json()
    assert got["model"]["temperature"] == 4.0
    assert got["predictions"][0]["probability"] == pytest.approx(want, abs=1e-4)
    # Hotter means less sure than the same model at its trained temperature.
    base = imagefit.load(trained_run).predict([CAT]).records[0]["probability"]
    assert 0.5 < got["predictions"][0]["probability"] < base


def test_concurrent_requests_are_batched(serve_app: FastAPI, cat_bytes: bytes) -> None:
    """Requests that arrive together share model calls and get their own answers."""
    app = create_app(ServeSettings(batch_window_ms=100.0, max_batch=16), model=serve_app.state.model)
    stats = app.state.batcher.stats
    dog = DOG.read_bytes()

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            jobs = [c.post("/predict", files={"files": (f"{i}.jpg", cat_bytes if i % 2 == 0 else dog, "image/jpeg")}) for i in range(12)]
            return await asyncio.gather(*jobs)

    responses = asyncio.run(run())
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    labels = [r.json()["predictions"][0]["label"] for r in responses]
    assert labels == ["cats" if i % 2 == 0 else "dogs" for i in range(12)]
    assert stats.images == 12
    assert stats.calls < 12 and stats.largest > 1, stats


def test_unbatched_mode_gives_same_answers(serve_app: FastAPI, client: TestClient, cat_bytes: bytes) -> None:
    app = create_app(ServeSettings(batch_window_ms=0), model=serve_app.state.model)
    with TestClient(app) as c:
        r = c.post("/predict", files={"files": ("cat.jpg", cat_bytes, "image/jpeg")})
        assert c.get("/health").json()["batching"] is False
    ref = client.post("/predict", files={"files": ("cat.jpg", cat_bytes, "image/jpeg")})
    assert r.json()["predictions"][0]["probability"] == pytest.approx(ref.json()["predictions"][0]["probability"], abs=1e-6)


def test_index_page(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert 'type="file"' in r.text
    for asset in re.findall(r'(?:src|href)="(static/[^"]+)"', r.text):
        assert client.get("/" + asset).status_code == 200, asset


def test_static_files_have_no_external_urls() -> None:
    """The page and the fallback docs work with no network."""
    for path in STATIC.iterdir():
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.I), f"{path.name} refers to an external URL"


def test_docs_offline(client: TestClient) -> None:
    r = client.get("/docs")
    assert r.status_code == 200
    refs = re.findall(r'(?:src|href)="([^"]+)"', r.text) + re.findall(r"url: '([^']+)'", r.text)
    assert refs
    for ref in refs:
        assert not re.match(r"(?:https?:)?//", ref), f"/docs loads {ref} from the network"
        if not ref.startswith("data:"):
            assert client.get(ref if ref.startswith("/") else "/" + ref).status_code == 200, ref
    assert client.get("/redoc").status_code == 404  # ReDoc only exists as a CDN script


def test_docs_fallback_without_swagger_package(serve_app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(routes, "swagger_assets", lambda: None)
    app = create_app(ServeSettings(), model=serve_app.state.model)
    with TestClient(app) as c:
        r = c.get("/docs")
    assert r.status_code == 200
    assert "openapi.json" in r.text
    assert "swagger-ui-bundle.js" not in r.text


def test_openapi_documents_limits(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    op = spec["paths"]["/predict"]["post"]
    assert set(op["responses"]) >= {"200", "400", "413", "415", "422", "503", "504"}
    assert "too_many_pixels" in op["responses"]["413"]["description"]
    body = op["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert body["properties"]["files"]["type"] == "array"
    assert "/health" in spec["paths"] and "/model" in spec["paths"]


def test_unknown_route_is_json_404(client: TestClient) -> None:
    r = client.get("/nope")
    assert r.status_code == 404
    assert r.json()["error"] == "not_found"
    r = client.get("/predict")
    assert r.status_code == 405
    assert r.json()["error"] == "method_not_allowed"


def test_bad_settings_fail_at_start(serve_app: FastAPI) -> None:
    from imagefit.errors import ConfigError

    model = serve_app.state.model
    for bad in ({"max_files": 0}, {"max_upload_mb": 0}, {"timeout_s": -1}, {"batch_window_ms": -1}, {"max_batch": 0}):
        with pytest.raises(ConfigError):
            create_app(ServeSettings(**bad), model=model)


def test_engine_output_is_per_image(serve_app: FastAPI) -> None:
    """Sanity: batched engine + head keeps rows aligned with inputs."""
    model = serve_app.state.model
    s = model.preprocess.input_size
    x = np.random.default_rng(0).integers(0, 255, (3, s, s, 3), dtype=np.uint8)
    one = np.concatenate([model.head_probs(model.engine(x[i : i + 1])[:, None, :]) for i in range(3)])
    both = model.head_probs(model.engine(x)[:, None, :])
    np.testing.assert_allclose(one, both, atol=1e-5)


def test_predict_unknown_field(client: TestClient, trained_run: Path) -> None:
    """Each prediction says whether the photo looks unlike the training photos, as Model.predict does."""
    from .conftest import png_bytes

    expected = imagefit.load(trained_run).predict([CAT, DOG])
    files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in (CAT, DOG)]
    files.append(("files", ("flat.png", png_bytes((64, 64), (128, 128, 128)), "image/png")))
    r = client.post("/predict", files=files)
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    for got, want in zip(preds, expected.records):
        assert got["unknown"] == want["unknown"]
        assert got["unknown_score"] == pytest.approx(want["unknown_score"], abs=1e-4)
    assert preds[2]["unknown"] is True  # a flat grey square is no cat or dog photo
    assert "unknown-badge" in (STATIC / "app.js").read_text()


def test_predict_unknown_null_without_detector(trained_run: Path, cat_bytes: bytes, tmp_path: Path) -> None:
    """A run trained before the detector existed answers with unknown null."""
    run = tmp_path / "old"
    shutil.copytree(trained_run, run)
    meta = json.loads((run / "imagefit.json").read_text())
    meta.pop("ood", None)
    (run / "imagefit.json").write_text(json.dumps(meta))
    app = create_app(ServeSettings(str(run), batch_window_ms=5.0, max_batch=4))
    with TestClient(app) as c:
        r = c.post("/predict", files={"files": ("cat.jpg", cat_bytes, "image/jpeg")})
    assert r.status_code == 200, r.text
    (pred,) = r.json()["predictions"]
    assert pred["unknown"] is None and pred["unknown_score"] is None and pred["label"] == "cats"


def test_predict_with_recorded_tta(trained_run: Path, tmp_path: Path) -> None:
    """A run saved with flip averaging is served with it, as Model.predict answers."""
    from _runs import edited_run

    run = edited_run(trained_run, tmp_path / "tta", tta=True)
    want = imagefit.load(run).predict([CAT, DOG]).records
    files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in (CAT, DOG)]
    with TestClient(create_app(ServeSettings(str(run)))) as c:
        assert c.get("/model").json()["tta"] is True
        got = c.post("/predict", files=files).json()["predictions"]
    for g, w in zip(got, want):
        assert g["probability"] == pytest.approx(w["probability"], abs=1e-4)
