"""Hub downloads against a loopback HTTP server standing in for huggingface.co (never the network)."""

import hashlib
import http.server
import socket
import threading

import pytest
from safetensors.torch import load_file, save

from imagefit.errors import ModelError
from imagefit.models import hub

NAME = "test_efficientnet.r160_in1k"  # a tiny timm test model whose weights live in timm/<NAME>
REPO = f"timm/{NAME}"


@pytest.fixture(scope="module")
def fake_repo():
    import timm

    model = timm.create_model(NAME.split(".")[0], pretrained=False, num_classes=0)
    files = {
        "model.safetensors": save({k: v.contiguous() for k, v in model.state_dict().items()}),
        "config.json": b'{"architecture": "test_efficientnet", "num_classes": 1000}',
    }
    return model, files


@pytest.fixture
def online(monkeypatch):
    """Undo conftest's HF_HUB_OFFLINE=1 (read by huggingface_hub at import) for one test."""
    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


@pytest.fixture
def server(fake_repo, online):
    _, files = fake_repo
    requests: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def _headers(self):
            requests.append(f"{self.command} {self.path}")
            prefix = f"/{REPO}/resolve/main/"
            name = self.path[len(prefix) :] if self.path.startswith(prefix) else None
            if name not in files:
                self.send_response(404)
                self.send_header("X-Error-Code", "EntryNotFound")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            body = files[name]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("ETag", f'"{hashlib.sha256(body).hexdigest()}"')
            self.send_header("X-Repo-Commit", "a" * 40)
            self.end_headers()
            return body

        def do_HEAD(self):
            self._headers()

        def do_GET(self):
            body = self._headers()
            if body is not None:
                self.wfile.write(body)

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", requests
    srv.shutdown()
    srv.server_close()


def test_downloads_safetensors_once_then_works_offline(server, fake_repo, tmp_path, monkeypatch):
    import timm

    url, requests = server
    monkeypatch.setenv("HF_ENDPOINT", url)
    path = hub.ensure_weights(NAME, progress=False, cache_dir=tmp_path)
    assert path.name == "model.safetensors" and path.is_file()
    assert any(r.endswith("/model.safetensors") for r in requests)
    assert not any(r.endswith((".bin", ".pth")) for r in requests)  # never a pickle
    model, _ = fake_repo
    assert set(load_file(path)) == set(model.state_dict())
    built = timm.create_model(NAME, pretrained=True, num_classes=0, pretrained_cfg_overlay={"file": str(path)})
    assert built.num_features == model.num_features
    # Cached now: offline, and with the server gone, the same file comes back without a request.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    n = len(requests)
    assert hub.ensure_weights(NAME, progress=False, cache_dir=tmp_path) == path
    assert len(requests) == n


def test_offline_without_cache_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="HF_HUB_OFFLINE"):
        hub.ensure_weights(NAME, progress=False, cache_dir=tmp_path)


def test_unreachable_hub_says_offline(online, tmp_path, monkeypatch):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(ModelError, match="offline"):
        hub.ensure_weights(NAME, progress=False, cache_dir=tmp_path)


def test_missing_weights_file_is_a_clear_error(server, tmp_path, monkeypatch):
    url, _ = server
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setattr(hub, "hub_repo", lambda name: ("timm/not_there", None))
    with pytest.raises(ModelError, match=r"no model\.safetensors|offline"):
        hub.ensure_weights(NAME, progress=False, cache_dir=tmp_path)


def test_unknown_name():
    with pytest.raises(ModelError, match="invalid model"):
        hub.hub_repo("no_such_model_xyz")


def test_catalogue_marks_offline_and_downloads(monkeypatch):
    monkeypatch.setattr(hub, "cached_timm_models", lambda: [])
    monkeypatch.setattr(hub, "_locally_available", lambda name: name.startswith("lite"))
    rows = {r.name: r for r in hub.catalogue()}
    assert rows["lite0"].status == "offline" and rows["lite0"].features == 1280
    conv = rows["convnext_tiny.fb_in22k_ft_in1k"]
    assert conv.status == "downloads 114 MB" and not conv.available and conv.top1 == pytest.approx(82.9)
    assert {r.name for r in rows.values() if r.recommended} == set(hub.RECOMMENDED)
    assert hub.resolve_name("convnext_tiny") == "convnext_tiny.fb_in22k_ft_in1k"
    assert hub.local_backbones() == ["lite0", "lite1", "lite2"]


def test_registry_resolves_hub_names_and_downloads_on_first_use(server, tmp_path, monkeypatch):
    """``--model <timm name>`` downloads through hub.ensure_weights, then builds from the cache."""
    import huggingface_hub.constants

    from imagefit.models.registry import create_backbone, get_spec, weights_available

    url, requests = server
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    assert not weights_available(NAME)
    module, spec = create_backbone(NAME)
    assert spec.name == NAME and any(r.endswith("/model.safetensors") for r in requests)
    assert weights_available(NAME) and get_spec(NAME).num_features == spec.num_features
    assert module.num_features == spec.num_features


def test_offline_hub_model_is_one_clear_line(cli, tmp_path, make_img):
    """Offline and not cached: the CLI says so in one error line (exit code of a model error), no traceback."""
    root = tmp_path / "data"
    for name, color in (("red", (220, 40, 40)), ("green", (40, 200, 60))):
        for i in range(3):
            make_img(root / name / f"{name}_{i}.png", color, seed=i)
    code, _, text = cli("train", root, "--out", tmp_path / "run", "--model", "convnext_tiny")
    assert code != 0 and text.count("error:") == 1 and "Traceback" not in text
    assert "HF_HUB_OFFLINE" in text and "convnext_tiny.fb_in22k_ft_in1k" in text


def test_models_lists_downloads_accuracy_and_recommendations(cli):
    import json

    code, out, text = cli("models")
    assert code == 0 and "downloads" in out and "82.9%" in out and "Recommended for transfer learning" in text
    code, out, _ = cli("models", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["lite0"]["available"] and rows["lite0"]["status"] == "offline"
    for k in hub.KNOWN[3:]:
        assert rows[k.name]["top1"] == k.top1 and rows[k.name]["features"] == k.features
        assert rows[k.name]["status"] in ("offline", f"downloads {k.download_mb} MB")
    assert {n for n, r in rows.items() if r["recommended"]} == set(hub.RECOMMENDED)
