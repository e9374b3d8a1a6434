"""The ONNX Runtime engine gives the torch path's numbers, on real photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import imagefit
from imagefit.engine import Engine
from imagefit.errors import ImagefitError


def test_onnx_and_torch_engines_agree_on_real_photos(trained_run: Path, sample_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    photos = sorted((sample_data / "val").rglob("*.jpg"))
    probs = {}
    for kind in ("onnx", "torch"):
        # A cache per engine: the torch run must compute its features, not read the ONNX run's.
        monkeypatch.setenv("IMAGEFIT_CACHE", str(tmp_path / kind))
        model = imagefit.load(trained_run)
        model.engine_kind = kind
        preds = model.predict(photos)
        assert model.engine.kind == kind
        probs[kind] = np.array([[r["probabilities"][c] for c in model.classes] for r in preds])
    assert probs["onnx"].shape == (len(photos), 2)
    diff = np.abs(probs["onnx"] - probs["torch"]).max()
    print(f"max probability difference onnx vs torch: {diff:.2e}")
    assert diff < 1e-3


def test_engine_refuses_float_input(trained_run: Path) -> None:
    model = imagefit.load(trained_run)
    s = model.preprocess.input_size
    with pytest.raises(ImagefitError, match="uint8"):
        model.engine(np.zeros((1, 3, s, s), np.float32))
    assert isinstance(model.engine, Engine)
