"""Issue 5, part 5: same data, seed and machine give identical results, twice.

The second run of each pair uses a fresh cache folder, so the features and the
ONNX graph are recomputed rather than read back.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import imagefit


def _train(data: Path, out: Path, strategy: str) -> imagefit.Run:
    opts = {"epochs": 2, "batch_size": 4, "workers": 2} if strategy == "full" else {"epochs": 5}
    return imagefit.train(data, out=out, model="simple_cnn", strategy=strategy, seed=3, **opts)


@pytest.mark.parametrize("strategy", ["linear", "full"])
def test_same_seed_same_results(strategy: str, tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGEFIT_CACHE", str(tmp_path / "cache1"))
    a = _train(tiny_data, tmp_path / "a", strategy)
    monkeypatch.setenv("IMAGEFIT_CACHE", str(tmp_path / "cache2"))
    b = _train(tiny_data, tmp_path / "b", strategy)
    assert a.metrics == b.metrics
    assert a.history == b.history
    wa, wb = load_file(str(a.path / "model.safetensors")), load_file(str(b.path / "model.safetensors"))
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    pa = imagefit.load(a.path).predict(tiny_data)
    pb = imagefit.load(b.path).predict(tiny_data)
    assert pa.records == pb.records


def test_another_seed_differs(tiny_data: Path, tmp_path: Path) -> None:
    a = imagefit.train(tiny_data, out=tmp_path / "a", model="simple_cnn", strategy="linear", epochs=5, seed=3)
    b = imagefit.train(tiny_data, out=tmp_path / "b", model="simple_cnn", strategy="linear", epochs=5, seed=4)
    assert a.history != b.history
