"""imagefit.export.graph.export_onnx: any module to an ONNX graph, dynamic batch, written atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from imagefit.errors import ArtifactError
from imagefit.export import export_onnx


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x)).mean((2, 3))


class _Fails(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("cannot trace this")


def _run(path: Path, x: np.ndarray, output: str = "output") -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == [output]
    return sess.run(None, {"input": x})[0]


def test_graph_matches_torch_at_any_batch_size(tmp_path: Path) -> None:
    module = _Tiny().train()  # exported in eval mode, handed back in its own mode
    path = export_onnx(module, tmp_path / "sub" / "tiny.onnx", 16, output_name="features")
    assert path == tmp_path / "sub" / "tiny.onnx" and path.is_file()
    assert module.training
    module.eval()
    for n in (1, 5):
        x = np.random.default_rng(n).normal(size=(n, 3, 16, 16)).astype(np.float32)
        with torch.no_grad():
            want = module(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(_run(path, x, "features"), want, atol=1e-5)


def test_pixels_input_is_uint8_nhwc(tmp_path: Path) -> None:
    class Pixels(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.permute(0, 3, 1, 2).float().mean((2, 3)) / 255.0

    path = export_onnx(Pixels(), tmp_path / "px.onnx", 8, pixels=True)
    x = np.full((3, 8, 8, 3), 51, np.uint8)
    np.testing.assert_allclose(_run(path, x), np.full((3, 3), 0.2), atol=1e-6)


def test_failed_export_leaves_no_file(tmp_path: Path) -> None:
    target = tmp_path / "bad.onnx"
    with pytest.raises(ArtifactError, match="ONNX export to .*bad.onnx failed"):
        export_onnx(_Fails(), target, 8)
    assert list(tmp_path.iterdir()) == []  # neither the graph nor a temporary file


def test_failed_export_keeps_the_previous_graph(tmp_path: Path) -> None:
    path = export_onnx(_Tiny(), tmp_path / "g.onnx", 8)
    before = path.read_bytes()
    with pytest.raises(ArtifactError):
        export_onnx(_Fails(), path, 8)
    assert path.read_bytes() == before
