"""The fastest correct inference engine for the device at hand.

Frozen backbones are exported once to ONNX (cached by weight digest) and run,
on a CPU, by ONNX Runtime; on a GPU by PyTorch with bf16 autocast and
channels_last. Measured on the 2-core AVX-512 machine with lite0
(BENCHMARKS.md, bench/engines.py, 2026-11-24): ONNX Runtime with one
single-threaded run per core 241 images/s, PyTorch fp32 55 (NCHW) and 61
(channels_last), PyTorch bf16 121.

OpenVINO (``engine="openvino"`` or ``IMAGEFIT_ENGINE=openvino``, package
``openvino``) runs the same graph about 1.3x faster than ONNX Runtime, but it
is opt-in: its TBB thread pools do not survive ``fork``, and a long-lived
process that loaded it and later forked from a worker thread (DataLoader
workers, ``subprocess`` from a thread pool) died with SIGSEGV in the test
suite. Its bf16 (AMX) mode would be 3x faster but moves probabilities by up
to 0.07, so fp32 is forced: every engine gives the torch path's numbers (max
probability difference < 1e-3, tested on real photos).

Engines take uint8 NHWC pixels (as :meth:`Preprocess.pixels` makes them) and
normalize inside the graph.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .data.transforms import Preprocess
from .errors import ImagefitError
from .export import export_onnx
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
        engine: ``auto`` (``$IMAGEFIT_ENGINE`` if set, else ONNX Runtime on
            CPU, torch on GPU), ``onnx``, ``openvino`` (opt-in, see the module
            notes) or ``torch``.
        device: ``auto``, ``cpu`` or ``cuda``.
    """

    def __init__(self, module: nn.Module | Callable[[], nn.Module], pre: Preprocess, key: str, engine: str = "auto", device: str = "auto"):
        if engine == "auto":
            # An override for every command and the server alike, e.g. IMAGEFIT_ENGINE=onnx.
            engine = os.environ.get("IMAGEFIT_ENGINE", "") or "auto"
        if engine not in ENGINES:
            raise ImagefitError(f"invalid engine: received {engine!r}; allowed: {', '.join(ENGINES)}")
        self.device = resolve_device(device)
        self.pre = pre
        self._module = module
        self._model: PixelModel | None = None
        kind = engine
        if kind == "auto":
            kind = "onnx" if self.device.type == "cpu" and _importable("onnxruntime") else "torch"
        elif kind in GRAPH_ENGINES and self.device.type != "cpu":
            raise ImagefitError(f"invalid engine for device {self.device.type}: received {engine!r}; allowed: torch, auto")
        elif kind in GRAPH_ENGINES and not _importable(_PACKAGE[kind]):
            raise ImagefitError(f"engine {kind!r} needs the {_PACKAGE[kind]!r} package: pip install {_PACKAGE[kind]}")
        self.kind = kind
        # ONNX Runtime: one single-threaded run per core, each on its own image, beats one run
        # spread over all cores (depthwise convolutions on small maps scale poorly across threads).
        # Measured on 2 cores, lite0: 2 concurrent 1-thread runs at batch 1/2/4/8/16 -> 237/227/211/
        # 202/179 images/s; one 2-thread run at batch 4 -> 171. OpenVINO: see _openvino_runner.
        self.batch_size = {"openvino": 2, "onnx": 1}.get(kind, 256 if self.device.type == "cuda" else 32)
        self.threads = cpu_threads() if kind in GRAPH_ENGINES else 1
        self._run_many: Callable[[list[np.ndarray]], list[np.ndarray]] = self._run_torch
        self._lock = threading.Lock()
        if kind in GRAPH_ENGINES:
            path = cache_root() / "onnx" / f"{key}-{pre.key()}.onnx"
            load = _openvino_runner if kind == "openvino" else _OrtRunner
            if not path.is_file():
                self._export(path)
            try:
                self._run_many = load(path, self.threads)
            except Exception:
                # A damaged cached graph is rebuilt rather than trusted.
                self._export(path)
                self._run_many = load(path, self.threads)
        else:
            self.model.to(self.device, memory_format=torch.channels_last)

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
        # One call at a time: each already keeps every core busy, and OpenVINO's single infer
        # request must not be shared by two threads at once.
        with self._lock:
            return np.concatenate(self._run_many(chunks))

    @property
    def concurrent(self) -> bool:
        """Whether :meth:`run_here` runs in parallel when called from several threads (ONNX Runtime)."""
        return isinstance(self._run_many, _OrtRunner)

    def run_here(self, x: np.ndarray) -> np.ndarray:
        """Run a small uint8 batch (one photo and its views) in the calling thread.

        With a :attr:`concurrent` engine, one thread per core can each take
        a photo from file to features (see ``features.extract``). Other
        engines run it under the lock, as :meth:`__call__` does.
        """
        if not isinstance(self._run_many, _OrtRunner):
            return self(x)
        self._check(x)
        return self._run_many.one(np.ascontiguousarray(x))

    def _check(self, x: np.ndarray) -> None:
        s = self.pre.input_size
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != (s, s, 3):
            raise ImagefitError(f"engine input must be uint8 [N, {s}, {s}, 3], received {x.dtype} {tuple(x.shape)}")

    def _run_torch(self, chunks: list[np.ndarray]) -> list[np.ndarray]:
        outs = []
        with torch.inference_mode():
            for chunk in chunks:
                t = torch.from_numpy(chunk).to(self.device, non_blocking=True)
                if self.device.type == "cuda":
                    with torch.autocast("cuda", dtype=torch.bfloat16):
                        outs.append(self.model(t).float().cpu().numpy())
                else:
                    outs.append(self.model(t).float().numpy())
        return outs


def _importable(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def cpu_threads() -> int:
    """Concurrent CPU inference runs: ``IMAGEFIT_THREADS``, else one per core."""
    raw = os.environ.get("IMAGEFIT_THREADS", "")
    try:
        n = int(raw) if raw else 0
    except ValueError:
        raise ImagefitError(f"invalid IMAGEFIT_THREADS: received {raw!r}; allowed: a positive integer") from None
    return n if n > 0 else (os.cpu_count() or 1)


class _OrtRunner:
    """One ONNX Runtime session, run single-threaded from ``threads`` Python threads.

    ``InferenceSession.run`` is thread-safe and releases the GIL.
    """

    def __init__(self, path: Path, threads: int):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="imagefit-ort") if threads > 1 else None

    def one(self, chunk: np.ndarray) -> np.ndarray:
        """Run one chunk in the calling thread."""
        return self.session.run(None, {"input": chunk})[0]

    def __call__(self, chunks: list[np.ndarray]) -> list[np.ndarray]:
        if self.pool is None or len(chunks) == 1:
            return [self.one(c) for c in chunks]
        return list(self.pool.map(self.one, chunks))


def _openvino_runner(path: Path, threads: int) -> Callable[[list[np.ndarray]], list[np.ndarray]]:
    """OpenVINO in fp32, one synchronous request spread over ``threads`` cores.

    A blocking ``infer`` releases the GIL (decoder threads run meanwhile) and
    needs no Python callbacks on OpenVINO's threads: its async queue, driven
    from Python, crashed the interpreter later in a test session. Measured
    on 2 cores, lite0: batch 1/2/4/8 -> 264/305/272/244 images/s, against
    312 for two async streams.
    """
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(
        core.read_model(str(path)),
        "CPU",
        {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": str(threads)},
    )
    request = compiled.create_infer_request()

    def run_many(chunks: list[np.ndarray]) -> list[np.ndarray]:
        # Zero-copy input: each chunk is C-contiguous and outlives its call.
        return [request.infer({0: chunk}, share_inputs=True)[0].copy() for chunk in chunks]

    return run_many


def model_key(prefix: str, digest: str) -> str:
    """File-system-safe engine key."""
    return f"{prefix.replace('/', '_')}-{digest}"


__all__ = ["ENGINES", "Engine", "PixelModel", "cpu_threads", "model_key", "resolve_device"]
