"""The fastest correct inference engine for the device at hand.

On a CPU, ONNX Runtime runs EfficientNet-Lite about 3x faster than PyTorch
channels_last and 9x faster than plain NCHW (see BENCHMARKS.md), so frozen
backbones are exported once to ONNX, cached by weight digest, and run there.
On a GPU, PyTorch with bf16 autocast and channels_last is used.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .errors import ImagefitError
from .export import export_onnx
from .paths import cache_root

ENGINES = ("auto", "onnx", "torch")


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class Engine:
    """Runs a frozen module on batches of preprocessed images.

    Args:
        module: Maps ``[N, 3, S, S]`` to ``[N, F]``.
        input_size: ``S``.
        key: Identifies the module's exact weights (for the ONNX file cache).
        engine: ``auto`` (ONNX Runtime on CPU, torch on GPU), ``onnx`` or ``torch``.
        device: ``auto``, ``cpu`` or ``cuda``.
    """

    def __init__(self, module: nn.Module, input_size: int, key: str, engine: str = "auto", device: str = "auto"):
        if engine not in ENGINES:
            raise ImagefitError(f"invalid engine: received {engine!r}; allowed: {', '.join(ENGINES)}")
        self.device = resolve_device(device)
        self.input_size = input_size
        self.module = module.eval()
        kind = engine
        if kind == "auto":
            kind = "onnx" if self.device.type == "cpu" and _has_ort() else "torch"
        self.kind = kind
        # ORT's best batch on 2 cores is ~16; larger batches spill the cache.
        self.batch_size = 16 if kind == "onnx" else (256 if self.device.type == "cuda" else 32)
        self._session = None
        if kind == "onnx":
            self._session = _ort_session(self.module, input_size, key)
        else:
            self.module.to(self.device, memory_format=torch.channels_last)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Run a float32 NCHW batch; returns float32 outputs."""
        outs = []
        for start in range(0, len(x), self.batch_size):
            chunk = np.ascontiguousarray(x[start : start + self.batch_size], dtype=np.float32)
            outs.append(self._run(chunk))
        return np.concatenate(outs) if outs else np.zeros((0,), np.float32)

    def _run(self, chunk: np.ndarray) -> np.ndarray:
        if self._session is not None:
            return self._session.run(None, {"input": chunk})[0]
        t = torch.from_numpy(chunk).to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            if self.device.type == "cuda":
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    return self.module(t).float().cpu().numpy()
            return self.module(t).float().numpy()


def _has_ort() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def _ort_session(module: nn.Module, input_size: int, key: str):  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    path = cache_root() / "onnx" / f"{key}-{input_size}.onnx"
    if not path.is_file():
        export_onnx(module, path, input_size, output_name="features")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(os.environ.get("IMAGEFIT_THREADS", 0)) or (os.cpu_count() or 1)
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception:
        # A damaged cached graph is rebuilt rather than trusted.
        export_onnx(module, path, input_size, output_name="features")
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def model_key(prefix: str, digest: str) -> str:
    """File-system-safe engine key."""
    return f"{prefix.replace('/', '_')}-{digest}"


__all__ = ["ENGINES", "Engine", "Path", "model_key", "resolve_device"]
