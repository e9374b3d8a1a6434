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

``int8`` runs a graph quantized after training on calibration photos
(:mod:`imagefit.engines.quantize`), by OpenVINO (or ONNX Runtime); it is
asked for explicitly with those photos and never chosen by ``auto``. Its
precision names the calibration set (``int8-<digest>``), so the feature
cache never mixes features of different calibrations.

Engines take uint8 NHWC pixels (as :meth:`Preprocess.pixels` makes them) and
normalize inside the graph.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .data.transforms import Preprocess
from .engines.cpu import PRECISIONS, bf16_supported, default_cpu_engine, importable
from .engines.quantize import calibration_digest, calibration_pixels, quantize_graph, quantized_path
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
            that holds accuracy on this machine), ``fp32``, ``bf16`` or ``int8``.
        calibration: For ``int8`` (required there): the photos whose pixels set
            the activation ranges, as uint8 ``[S, S, 3]`` arrays or photo files
            (training photos, never the scored ones; see
            :func:`imagefit.engines.quantize.calibration_choice`), or the
            ``int8-<digest>`` precision of a graph quantized before (found in the cache;
            ``precision="int8-<digest>"`` alone says the same).

    Attributes:
        kind: The engine that runs (``onnx``, ``openvino``, ``torch``).
        precision: What the features are computed in (``fp32``, ``bf16``,
            ``int8-<calibration digest>``; ``bf16-amp`` for torch autocast on a
            GPU). Features of different precisions are never mixed (the feature cache keys it).
    """

    def __init__(
        self,
        module: nn.Module | Callable[[], nn.Module],
        pre: Preprocess,
        key: str,
        engine: str = "auto",
        device: str = "auto",
        precision: str = "auto",
        calibration: Sequence[np.ndarray | str | Path] | str | None = None,
    ):
        self.device = resolve_device(device)
        self.pre = pre
        self._module = module
        self._model: PixelModel | None = None
        if precision.startswith("int8-") and calibration is None:
            precision, calibration = "int8", precision  # a recorded int8 precision names its cached graph
        self.kind, self.precision = _choose(engine, precision, self.device)
        pixels = None
        if self.precision == "int8":
            self.precision, pixels = _calibration(calibration, pre)
        # One single-threaded run per core, each on its own photo, beats one run spread over
        # all cores (depthwise convolutions on small maps scale poorly across threads); OpenVINO
        # runs one stream per core likewise. Measured figures: bench/engines.py.
        self.batch_size = {"openvino": 2, "onnx": 1}.get(self.kind, 256 if self.device.type == "cuda" else 32)
        self.threads = cpu_threads() if self.kind in GRAPH_ENGINES else 1
        # Threads that each take a photo from file to features (features.extract). ONNX Runtime runs a
        # photo in the calling thread, so one per core; OpenVINO runs it on its own stream threads while
        # the caller waits, so a second caller per stream decodes the next photo meanwhile (bench/predict.py
        # figures in BENCHMARKS.md; more than that only oversubscribed the cores).
        self.feed_threads = self.threads * (2 if self.kind == "openvino" else 1)
        self._runner: Runner | None = None
        self._lock = threading.Lock()
        self.graph: Path | None = None  # the ONNX file a graph engine runs (a run saves its int8 graph)
        _ENGINES.add(self)
        if self.kind in GRAPH_ENGINES:
            path = graph_path(key, pre)
            self.graph = path
            if self.precision.startswith("int8-"):
                self.graph = quantized_path(path, self.precision.removeprefix("int8-"))
                self._runner = self._load_int8(path, self.precision.removeprefix("int8-"), pixels)
                return
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
            # The int8 graph's quantized layers run in int8 whatever the hint; the rest in fp32.
            return OpenVinoRunner(path, self.threads, "fp32" if self.precision.startswith("int8") else self.precision)
        return OrtRunner(path, self.threads)

    def _load_int8(self, fp32: Path, digest: str, pixels: np.ndarray | None) -> Runner:
        """The int8 graph calibrated on ``pixels`` (cached under their digest), quantized when missing or damaged."""
        path = quantized_path(fp32, digest)
        if path.is_file():
            try:
                return self._load(path)
            except Exception:
                pass  # damaged: quantized again below when the calibration photos are at hand
        if pixels is None:
            raise ImagefitError(
                f"the int8 graph calibrated on set {digest} is not in the cache ({path.parent}); pass its calibration photos again"
            )
        if not fp32.is_file():
            self._export(fp32)
        try:
            quantize_graph(fp32, pixels, path)
        except ImagefitError:
            self._export(fp32)  # a damaged fp32 graph is the likeliest cause: rebuilt, then tried once more
            quantize_graph(fp32, pixels, path)
        return self._load(path)

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
        if precision == "int8":
            raise invalid(f"precision for device {device.type}", precision, "fp32, bf16, auto")
        return "torch", "fp32" if precision == "fp32" else "bf16-amp"
    if engine == "auto":
        # int8: OpenVINO ran the quantized graph faster than ONNX Runtime (bench/engines.py).
        int8 = "openvino" if importable("openvino") else "onnx"
        engine = {"bf16": "openvino", "int8": int8, "fp32": "onnx" if importable("onnxruntime") else "torch"}.get(precision, "")
        if not engine:
            return default_cpu_engine()
    if engine in GRAPH_ENGINES and not importable(_PACKAGE[engine]):
        raise ImagefitError(f"engine {engine!r} needs the {_PACKAGE[engine]!r} package: pip install {_PACKAGE[engine]}")
    if precision == "auto":
        precision = default_cpu_engine()[1] if engine == "openvino" else "fp32"
    if precision == "bf16" and engine != "openvino":
        raise invalid(f"precision for engine {engine}", precision, "fp32, int8, auto" if engine == "onnx" else "fp32, auto")
    if precision == "int8" and engine == "torch":
        raise invalid(f"precision for engine {engine}", precision, "fp32, auto")
    if precision == "bf16" and not bf16_supported():
        raise invalid("precision on this CPU (no bf16 instructions)", precision, "fp32, auto")
    return engine, precision


def graph_path(key: str, pre: Preprocess, precision: str = "fp32") -> Path:
    """The cached ONNX graph of backbone ``key`` under ``pre``; for ``int8-<digest>``, its quantized graph."""
    path = cache_root() / "onnx" / f"{key}-{pre.key()}.onnx"
    return quantized_path(path, precision.removeprefix("int8-")) if precision.startswith("int8-") else path


def _calibration(calibration: Sequence[np.ndarray | str | Path] | str | None, pre: Preprocess) -> tuple[str, np.ndarray | None]:
    """``(int8-<digest>, calibration pixels)``; pixels are None where an earlier graph's ``int8-<digest>`` is named."""
    if isinstance(calibration, str):
        digest = calibration.removeprefix("int8-")
        if len(digest) != 16 or any(c not in "0123456789abcdef" for c in digest):
            raise invalid("int8 calibration", calibration, "photos, pixel arrays or an 'int8-' + 16 hex digits precision")
        return f"int8-{digest}", None
    if calibration is None or len(calibration) == 0:
        raise invalid("calibration for precision int8", calibration, "training photos (uint8 [S, S, 3] arrays or photo files)")
    pixels = calibration_pixels(calibration, pre)
    return f"int8-{calibration_digest(pixels)}", pixels


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
        cannot compute bf16 features; else the recorded precision (``int8-<digest>`` names the
        cached graph of that calibration: fp32 with a note only on a GPU or the torch engine).
    """
    override = os.environ.get("IMAGEFIT_PRECISION")
    if recorded is not None and recorded.startswith("int8-") and override == "int8":
        return _load_int8_precision(recorded, engine, device)  # int8 everywhere: this run's own calibration
    if recorded is None or override:
        return "auto", None
    if recorded == "fp32":
        return "fp32", None
    if recorded.startswith("int8-"):
        return _load_int8_precision(recorded, engine, device)
    if engine == "auto":
        engine = os.environ.get("IMAGEFIT_ENGINE", "") or "auto"  # as Engine reads it
    # bf16 (OpenVINO on a CPU) or bf16-amp (torch on a GPU): bf16 asks each device for its own kind.
    if resolve_device(device).type != "cpu":
        return "bf16", None
    if engine in ("auto", "openvino") and bf16_supported() and importable("openvino"):
        return "bf16", None
    why = f"engine {engine}" if engine not in ("auto", "openvino") else "this CPU or installation (needs bf16 instructions and openvino)"
    return "fp32", f"note: this model's head was trained on {recorded} features; {why} cannot compute them, using fp32"


def _load_int8_precision(recorded: str, engine: str, device: str) -> tuple[str, str | None]:
    """``recorded`` (the cached graph of that calibration) where a CPU graph engine can run it, else fp32 with a note."""
    if engine == "auto":
        engine = os.environ.get("IMAGEFIT_ENGINE", "") or "auto"
    if resolve_device(device).type == "cpu" and engine in ("auto", *GRAPH_ENGINES):
        return recorded, None
    why = f"engine {engine}" if engine != "auto" else "a GPU"
    return "fp32", f"note: this model's head was trained on int8 features; {why} cannot compute them, using fp32"


def model_key(prefix: str, digest: str) -> str:
    """File-system-safe engine key."""
    return f"{prefix.replace('/', '_')}-{digest}"


__all__ = ["ENGINES", "PRECISIONS", "Engine", "PixelModel", "cpu_threads", "graph_path", "load_precision", "model_key", "resolve_device"]
