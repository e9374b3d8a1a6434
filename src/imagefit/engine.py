"""The fastest correct inference engine for the device at hand.

On a CPU, ONNX Runtime runs EfficientNet-Lite about 3x faster than PyTorch
channels_last and 9x faster than plain NCHW (see BENCHMARKS.md), so frozen
backbones are exported once to ONNX, cached by weight digest, and run there.
On a GPU, PyTorch with bf16 autocast and channels_last is used.

Engines take uint8 NHWC pixels (as :meth:`Preprocess.pixels` makes them) and
normalize inside the graph.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn

from .data.transforms import Preprocess
from .errors import ImagefitError
from .export import export_onnx
from .paths import cache_root

ENGINES = ("auto", "onnx", "torch")


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class PixelModel(nn.Module):
    """uint8 NHWC pixels -> normalized float NCHW -> ``module``."""

    def __init__(self, module: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.module = module
        self.register_buffer("scale", 1.0 / (torch.tensor(std).view(1, 3, 1, 1) * 255.0), persistent=False)
        self.register_buffer("shift", (torch.tensor(mean) / torch.tensor(std)).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 3, 1, 2).float()
        return self.module(x * self.scale - self.shift)


class Engine:
    """Runs a frozen module on batches of uint8 NHWC images.

    Args:
        module: Maps normalized ``[N, 3, S, S]`` to ``[N, F]``.
        pre: The preprocessing (input size, mean, std) the module expects.
        key: Identifies the module's exact weights (for the ONNX file cache).
        engine: ``auto`` (ONNX Runtime on CPU, torch on GPU), ``onnx`` or ``torch``.
        device: ``auto``, ``cpu`` or ``cuda``.
    """

    def __init__(self, module: nn.Module, pre: Preprocess, key: str, engine: str = "auto", device: str = "auto"):
        if engine not in ENGINES:
            raise ImagefitError(f"invalid engine: received {engine!r}; allowed: {', '.join(ENGINES)}")
        self.device = resolve_device(device)
        self.pre = pre
        self.model = PixelModel(module.eval(), pre.mean, pre.std).eval()
        kind = engine
        if kind == "auto":
            kind = "onnx" if self.device.type == "cpu" and _has_ort() else "torch"
        self.kind = kind
        # Measured on 2 cores (lite0, uint8 graph): batch 1/2/4/8/16/32 -> 149/170/187/182/161/141
        # images/s; past 4 the activations spill the cache.
        self.batch_size = 4 if kind == "onnx" else (256 if self.device.type == "cuda" else 32)
        self._session = None
        if kind == "onnx":
            self._session = _ort_session(self.model, pre, key)
        else:
            self.model.to(self.device, memory_format=torch.channels_last)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Run a uint8 ``[N, S, S, 3]`` batch; returns float32 outputs."""
        s = self.pre.input_size
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != (s, s, 3):
            raise ImagefitError(f"engine input must be uint8 [N, {s}, {s}, 3], received {x.dtype} {tuple(x.shape)}")
        outs = []
        for start in range(0, len(x), self.batch_size):
            outs.append(self._run(np.ascontiguousarray(x[start : start + self.batch_size])))
        return np.concatenate(outs) if outs else np.zeros((0,), np.float32)

    def _run(self, chunk: np.ndarray) -> np.ndarray:
        if self._session is not None:
            return self._session.run(None, {"input": chunk})[0]
        t = torch.from_numpy(chunk).to(self.device, non_blocking=True)
        with torch.inference_mode():
            if self.device.type == "cuda":
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    return self.model(t).float().cpu().numpy()
            return self.model(t).float().numpy()


def _has_ort() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def _ort_session(model: nn.Module, pre: Preprocess, key: str):  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    path = cache_root() / "onnx" / f"{key}-{pre.key()}.onnx"
    if not path.is_file():
        export_onnx(model, path, pre.input_size, output_name="features", pixels=True)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(os.environ.get("IMAGEFIT_THREADS", 0)) or (os.cpu_count() or 1)
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    # Decoder threads share the cores: spinning ORT workers would steal their time.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception:
        # A damaged cached graph is rebuilt rather than trusted.
        export_onnx(model, path, pre.input_size, output_name="features", pixels=True)
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def model_key(prefix: str, digest: str) -> str:
    """File-system-safe engine key."""
    return f"{prefix.replace('/', '_')}-{digest}"


__all__ = ["ENGINES", "Engine", "PixelModel", "model_key", "resolve_device"]
