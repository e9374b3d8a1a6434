"""Every CPU engine in fp32 (ONNX Runtime, OpenVINO) gives the torch path's numbers, on real photos; the CPU default."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import imagefit
from imagefit.engine import Engine
from imagefit.engines.cpu import default_cpu_engine
from imagefit.errors import ImagefitError


def _probs(model: imagefit.Model, photos: list[Path]) -> np.ndarray:
    return np.array([[r["probabilities"][c] for c in model.classes] for r in model.predict(photos)])


def test_onnx_and_torch_engines_agree_on_real_photos(
    trained_run: Path, sample_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    photos = sorted((sample_data / "val").rglob("*.jpg"))
    probs = {}
    for kind in ("onnx", "torch"):
        # A cache per engine: the torch run must compute its features, not read the ONNX run's.
        monkeypatch.setenv("IMAGEFIT_CACHE", str(tmp_path / kind))
        model = imagefit.load(trained_run)
        model.engine_kind = kind
        probs[kind] = _probs(model, photos)
        assert model.engine.kind == kind
    assert probs["onnx"].shape == (len(photos), 2)
    diff = np.abs(probs["onnx"] - probs["torch"]).max()
    print(f"max probability difference onnx vs torch: {diff:.2e}")
    assert diff < 1e-3


# OpenVINO runs in a child process in fp32 (the identity check holds for fp32 only). Fork safety
# is tested in tests/engines/test_runners.py.
_OPENVINO_CHECK = """
import json, sys
from pathlib import Path
import numpy as np
import imagefit
from imagefit.engine import Engine

run, photos_file, ref_file = sys.argv[1:]
photos = [Path(p) for p in json.loads(Path(photos_file).read_text())]
model = imagefit.load(run)
model.engine_kind = "openvino"
probs = np.array([[r["probabilities"][c] for c in model.classes] for r in model.predict(photos)])
assert (model.engine.kind, model.engine.precision) == ("openvino", "fp32"), model.engine.kind
s = model.preprocess.input_size
x = np.random.default_rng(0).integers(0, 256, (7, s, s, 3), dtype=np.uint8)
eng = Engine(lambda: model.backbone, model.preprocess, "order-test", "openvino")
together, one_by_one = eng(x), np.concatenate([eng(x[i : i + 1]) for i in range(len(x))])
print(json.dumps({"diff": float(np.abs(probs - np.load(ref_file)).max()), "order": float(np.abs(together - one_by_one).max()),
                  "distinct": bool(not np.allclose(together[0], together[1])), "shape": list(together.shape)}))
"""


def test_openvino_engine_agrees_with_torch_in_a_child_process(trained_run: Path, sample_data: Path, tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    photos = sorted((sample_data / "val").rglob("*.jpg"))
    model = imagefit.load(trained_run)
    model.engine_kind = "torch"
    np.save(tmp_path / "torch.npy", _probs(model, photos))
    (tmp_path / "photos.json").write_text(json.dumps([str(p) for p in photos]))
    # fp32: the identity check holds for fp32 only (bf16 is accepted by its effect, tests/test_precision.py).
    env = {**os.environ, "IMAGEFIT_CACHE": str(tmp_path / "ov-cache"), "IMAGEFIT_THREADS": "2", "IMAGEFIT_PRECISION": "fp32"}
    out = subprocess.run(
        [sys.executable, "-c", _OPENVINO_CHECK, str(trained_run), str(tmp_path / "photos.json"), str(tmp_path / "torch.npy")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"max probability difference openvino vs torch: {got['diff']:.2e}")
    assert got["diff"] < 1e-3
    assert got["order"] < 1e-5 and got["distinct"] and got["shape"] == [7, model.meta["backbone"]["num_features"]]


def test_auto_engine_on_cpu_is_this_cpus_default(trained_run: Path) -> None:
    # OpenVINO bf16 where the CPU has AMX, ONNX Runtime fp32 elsewhere (tests/engines/test_cpu.py).
    # In a child process: OpenVINO stays out of the pytest process (see tests/conftest.py).
    env = {k: v for k, v in os.environ.items() if k not in ("IMAGEFIT_ENGINE", "IMAGEFIT_PRECISION")}
    # A loaded model keeps the precision it was trained with (this run: the suite's fp32), so ask for a new engine.
    script = (
        "import sys, imagefit; from imagefit.engine import Engine; m = imagefit.load(sys.argv[1]); "
        "e = Engine(lambda: m.backbone, m.preprocess, 'auto-default-test', 'auto'); print(e.kind, e.precision)"
    )
    done = subprocess.run([sys.executable, "-c", script, str(trained_run)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert tuple(done.stdout.split()[-2:]) == default_cpu_engine()


@pytest.mark.parametrize("threads", ["1", "3"])
def test_onnx_engine_keeps_order_across_threads(trained_run: Path, monkeypatch: pytest.MonkeyPatch, threads: str) -> None:
    # Chunks run concurrently; outputs must come back in input order, whatever the thread count.
    monkeypatch.setenv("IMAGEFIT_THREADS", threads)
    model = imagefit.load(trained_run)
    s = model.preprocess.input_size
    x = np.random.default_rng(0).integers(0, 256, (7, s, s, 3), dtype=np.uint8)
    eng = Engine(lambda: model.backbone, model.preprocess, "order-test", "onnx")
    assert eng.threads == int(threads)
    together = eng(x)
    one_by_one = np.concatenate([eng(x[i : i + 1]) for i in range(len(x))])
    assert together.shape == (7, model.meta["backbone"]["num_features"])
    np.testing.assert_allclose(together, one_by_one, rtol=0, atol=1e-5)
    assert not np.allclose(together[0], together[1])


def test_cached_graph_needs_no_backbone(trained_run: Path, sample_data: Path) -> None:
    # Once the graph is cached, loading and predicting never builds the torch backbone.
    photos = sorted((sample_data / "val").rglob("*.jpg"))[:2]
    imagefit.load(trained_run).predict(photos)  # caches the graph (and these features)
    model = imagefit.load(trained_run)
    model.predict(photos, tta=True)  # flipped views are not cached: the engine runs
    assert model._backbone is None


def test_engine_override_from_environment(trained_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGEFIT_ENGINE", "torch")
    assert imagefit.load(trained_run).engine.kind == "torch"
    monkeypatch.setenv("IMAGEFIT_ENGINE", "tensorrt")
    with pytest.raises(ImagefitError, match="invalid engine: received 'tensorrt'; allowed: auto, openvino, onnx, torch"):
        imagefit.load(trained_run).engine


def test_bad_thread_setting(trained_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGEFIT_THREADS", "many")
    with pytest.raises(ImagefitError, match="IMAGEFIT_THREADS.*'many'"):
        imagefit.load(trained_run).engine


def test_engine_refuses_float_input(trained_run: Path) -> None:
    model = imagefit.load(trained_run)
    s = model.preprocess.input_size
    with pytest.raises(ImagefitError, match="uint8"):
        model.engine(np.zeros((1, 3, s, s), np.float32))
    assert isinstance(model.engine, Engine)


@pytest.mark.parametrize(
    ("recorded", "engine", "supported", "expected"),
    [
        (None, "auto", True, ("auto", False)),  # a run saved before precision was recorded
        ("fp32", "auto", True, ("fp32", False)),
        ("bf16", "auto", True, ("bf16", False)),
        ("bf16", "auto", False, ("fp32", True)),  # the machine cannot: fp32 with one note
        ("bf16", "onnx", True, ("fp32", True)),  # the engine asked for cannot
    ],
)
def test_load_precision(recorded, engine, supported, expected, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from imagefit import engine as engine_mod

    monkeypatch.delenv("IMAGEFIT_PRECISION", raising=False)
    monkeypatch.delenv("IMAGEFIT_ENGINE", raising=False)  # the suite's own choice (tests/conftest.py)
    monkeypatch.setattr(engine_mod, "bf16_supported", lambda: supported)
    monkeypatch.setattr(engine_mod, "importable", lambda name: True)
    precision, note = engine_mod.load_precision(recorded, engine, "cpu")
    assert (precision, note is not None) == expected
    if note:
        assert "\n" not in note and recorded in note and "fp32" in note


def test_load_precision_follows_the_environment_override(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from imagefit.engine import load_precision

    monkeypatch.setenv("IMAGEFIT_PRECISION", "fp32")
    assert load_precision("bf16", "auto", "cpu") == ("auto", None)


def test_load_precision_respects_an_engine_set_in_the_environment(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from imagefit.engine import load_precision

    monkeypatch.delenv("IMAGEFIT_PRECISION", raising=False)
    monkeypatch.setenv("IMAGEFIT_ENGINE", "onnx")
    precision, note = load_precision("bf16", "auto", "cpu")
    assert precision == "fp32" and note is not None and "onnx" in note
