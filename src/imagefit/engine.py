"""The fastest correct inference engine for the device at hand.

Frozen backbones are exported once to ONNX (cached by weight digest) and run,
on a CPU, by ONNX Runtime or OpenVINO (:mod:`imagefit.engines.runners`); on a
GPU by PyTorch with bf16 autocast and channels_last.

On a CPU the default is the fastest engine and precision that holds accuracy
there (:func:`imagefit.engines.cpu.default_cpu_engine`): OpenVINO in bf16 where
the CPU has AMX, else ONNX Runtime in fp32. bf16 moves single photos'
probabilities a little, so it is accepted by its effect on accuracy and log
loss with a head trained on the same bf16 features (bench/precision.py), and
features of one precision are never mixed with another's: the feature cache
keys :attr:`Engine.precision`. Measured figures: BENCHMARKS.md.

``IMAGEFIT_ENGINE`` (``onnx``, ``openvino``, ``torch``) and
``IMAGEFIT_PRECISION`` (``fp32``, ``bf16``) override the automatic choice for
every command and the server alike.

Engines take uint8 NHWC pixels (as :meth:`Preprocess.pixels` makes them) and
normalize inside the graph.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .data.transforms import Preprocess
from .engines.cpu import PRECISIONS, bf16_supported, default_cpu_engine, importable
from .engines.runners import OpenVinoRunner, OrtRunner, Runner
from .errors import ImagefitError, invalid
from .export.graph import export_onnx
from .paths import cache_root

ENGINES = ("auto", "openvino", "onnx", "torch")
# Engines that run the exported ONNX graph on the CPU, and the package each needs.
GRAPH_ENGINES = ("openvino", "onnx")
_PACKAGE = {"openvino": "openvino", "onnx": "onnxruntime"}


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class PixelModel(nn.Module):
    """uint8 NHWC pixels -> normalized float NCHW -> ``module``."""

    scale: torch.Tensor
    shift: torch.Tensor

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
        module: Maps normalized ``[N, 3, S, S]`` to ``[N, F]``; or a function
            building it, called only if the cached graph is missing or the
            torch engine runs (so a cached graph needs no backbone at all).
        pre: The preprocessing (input size, mean, std) the module expects.
        key: Identifies the module's exact weights (for the ONNX file cache).
        engine: ``auto`` (``$IMAGEFIT_ENGINE`` if set, else the CPU's default,
            see the module notes, or torch on a GPU), ``onnx``, ``openvino`` or ``torch``.
        device: ``auto``, ``cpu`` or ``cuda``.
        precision: ``auto`` (``$IMAGEFIT_PRECISION`` if set, else the fastest
            that holds accuracy on this machine), ``fp32`` or ``bf16``.

    Attributes:
        kind: The engine that runs (``onnx``, ``openvino``, ``torch``).
        precision: What the features are computed in (``fp32``, ``bf16``;
            ``bf16-amp`` for torch autocast on a GPU). Features of different
            precisions are never mixed (the feature cache keys it).
    """

    def __init__(
        self,
        module: nn.Module | Callable[[], nn.Module],
        pre: Preprocess,
        key: str,
        engine: str = "auto",
        device: str = "auto",
        precision: str = "auto",
    ):
        self.device = resolve_device(device)
        self.pre = pre
        self._module = module
        self._model: PixelModel | None = None
        self.kind, self.precision = _choose(engine, precision, self.device)
        # One single-threaded run per core, each on its own photo, beats one run spread over
        # all cores (depthwise convolutions on small maps scale poorly across threads); OpenVINO
        # runs one stream per core likewise. Measured figures: bench/engines.py.
        self.batch_size = {"openvino": 2, "onnx": 1}.get(self.kind, 256 if self.device.type == "cuda" else 32)
        self.threads = cpu_threads() if self.kind in GRAPH_ENGINES else 1
        self._runner: Runner | None = None
        self._lock = threading.Lock()
        _ENGINES.add(self)
        if self.kind in GRAPH_ENGINES:
            path = cache_root() / "onnx" / f"{key}-{pre.key()}.onnx"
            if not path.is_file():
                self._export(path)
            try:
                self._runner = self._load(path)
            except Exception:
                # A damaged cached graph is rebuilt rather than trusted.
                self._export(path)
                self._runner = self._load(path)
        else:
            self.model.to(self.device, memory_format=torch.channels_last)  # type: ignore[call-overload]

    def _load(self, path: Path) -> Runner:
        if self.kind == "openvino":
            return OpenVinoRunner(path, self.threads, self.precision)
        return OrtRunner(path, self.threads)

    @property
    def model(self) -> PixelModel:
        """The torch module (uint8 NHWC in), built on first use."""
        if self._model is None:
            module = self._module if isinstance(self._module, nn.Module) else self._module()
            self._model = PixelModel(module.eval(), self.pre.mean, self.pre.std).eval()
        return self._model

    def _export(self, path: Path) -> None:
        export_onnx(self.model, path, self.pre.input_size, output_name="features", pixels=True)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Run a uint8 ``[N, S, S, 3]`` batch; returns float32 outputs."""
        self._check(x)
        chunks = [np.ascontiguousarray(x[start : start + self.batch_size]) for start in range(0, len(x), self.batch_size)]
        if not chunks:
            return np.zeros((0,), np.float32)
        # One call at a time: each already keeps every core busy.
        with self._lock:
            if self._runner is not None:
                return np.concatenate(self._runner(chunks))
            return np.concatenate(self._run_torch(chunks))

    @property
    def concurrent(self) -> bool:
        """Whether :meth:`run_here` runs in parallel when called from several threads (the CPU graph engines)."""
        return self._runner is not None

    def run_here(self, x: np.ndarray) -> np.ndarray:
        """Run a small uint8 batch (one photo and its views) in the calling thread.

        With a :attr:`concurrent` engine, one thread per core can each take
        a photo from file to features (see ``features.extract``). The torch
        engine runs it under the lock, as :meth:`__call__` does.
        """
        if self._runner is None:
            return self(x)
        self._check(x)
        return self._runner.one(np.ascontiguousarray(x))

    def _check(self, x: np.ndarray) -> None:
        s = self.pre.input_size
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != (s, s, 3):
            raise ImagefitError(f"engine input must be uint8 [N, {s}, {s}, 3], received {x.dtype} {tuple(x.shape)}")

    def _run_torch(self, chunks: list[np.ndarray]) -> list[np.ndarray]:
        outs = []
        amp = self.device.type == "cuda" and self.precision == "bf16-amp"
        with torch.inference_mode():
            for chunk in chunks:
                t = torch.from_numpy(chunk).to(self.device, non_blocking=True)
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=amp):
                    out = self.model(t).float()
                outs.append(out.cpu().numpy())
        return outs


def _choose(engine: str, precision: str, device: torch.device) -> tuple[str, str]:
    """``(engine, precision)`` from the arguments, ``$IMAGEFIT_ENGINE``/``$IMAGEFIT_PRECISION`` and the machine."""
    if engine == "auto":
        engine = os.environ.get("IMAGEFIT_ENGINE", "") or "auto"
    if precision == "auto":
        precision = os.environ.get("IMAGEFIT_PRECISION", "") or "auto"
    if engine not in ENGINES:
        raise invalid("engine", engine, ENGINES)
    if precision not in PRECISIONS:
        raise invalid("precision", precision, PRECISIONS)
    if device.type != "cpu":
        if engine in GRAPH_ENGINES:
            raise invalid(f"engine for device {device.type}", engine, "torch, auto")
        return "torch", "fp32" if precision == "fp32" else "bf16-amp"
    if engine == "auto":
        engine = {"bf16": "openvino", "fp32": "onnx" if importable("onnxruntime") else "torch"}.get(precision, "")
        if not engine:
            return default_cpu_engine()
    if engine in GRAPH_ENGINES and not importable(_PACKAGE[engine]):
        raise ImagefitError(f"engine {engine!r} needs the {_PACKAGE[engine]!r} package: pip install {_PACKAGE[engine]}")
    if precision == "auto":
        precision = default_cpu_engine()[1] if engine == "openvino" else "fp32"
    if precision == "bf16" and engine != "openvino":
        raise invalid(f"precision for engine {engine}", precision, "fp32, auto")
    if precision == "bf16" and not bf16_supported():
        raise invalid("precision on this CPU (no bf16 instructions)", precision, "fp32, auto")
    return engine, precision


# Every live engine, so that a forked child gets fresh locks (one held by a thread at fork
# time would stay held forever there). The runners reset their own native state.
_ENGINES: weakref.WeakSet[Engine] = weakref.WeakSet()


def _reset_locks_in_child() -> None:
    for eng in list(_ENGINES):
        eng._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_locks_in_child)


def cpu_threads() -> int:
    """Concurrent CPU inference runs: ``IMAGEFIT_THREADS``, else one per core."""
    raw = os.environ.get("IMAGEFIT_THREADS", "")
    try:
        n = int(raw) if raw else 0
    except ValueError:
        raise invalid("IMAGEFIT_THREADS", raw, "a positive integer") from None
    return n if n > 0 else (os.cpu_count() or 1)


def load_precision(recorded: str | None, engine: str = "auto", device: str = "auto") -> tuple[str, str | None]:
    """The precision to rebuild a run's engine in, so prediction sees the features its head was trained on.

    Args:
        recorded: The run record's ``features.precision`` (None for runs saved before it was recorded).
        engine: The engine asked for (``auto``, ``onnx``, ...).
        device: ``auto``, ``cpu`` or ``cuda``.

    Returns:
        ``(precision, note)``: ``auto`` for old runs or when ``$IMAGEFIT_PRECISION`` overrides
        every command; ``fp32`` with a one-line note where this machine (or the engine asked for)
        cannot compute bf16 features; else the recorded precision.
    """
    if recorded is None or os.environ.get("IMAGEFIT_PRECISION"):
        return "auto", None
    if recorded == "fp32":
        return "fp32", None
    if engine == "auto":
        engine = os.environ.get("IMAGEFIT_ENGINE", "") or "auto"  # as Engine reads it
    # bf16 (OpenVINO on a CPU) or bf16-amp (torch on a GPU): bf16 asks each device for its own kind.
    if resolve_device(device).type != "cpu":
        return "bf16", None
    if engine in ("auto", "openvino") and bf16_supported() and importable("openvino"):
        return "bf16", None
    why = f"engine {engine}" if engine not in ("auto", "openvino") else "this CPU or installation (needs bf16 instructions and openvino)"
    return "fp32", f"note: this model's head was trained on {recorded} features; {why} cannot compute them, using fp32"


def model_key(prefix: str, digest: str) -> str:
    """File-system-safe engine key."""
    return f"{prefix.replace('/', '_')}-{digest}"


__all__ = ["ENGINES", "PRECISIONS", "Engine", "PixelModel", "cpu_threads", "load_precision", "model_key", "resolve_device"]
