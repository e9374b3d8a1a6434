"""What this CPU can run fast: instruction-set flags and the default CPU engine and precision.

The choice is made from the flags the kernel reports (``/proc/cpuinfo``), so
an Intel Xeon with AMX and an AMD EPYC with AVX2 only each get the engine that
is fastest on them at equal accuracy, and a machine we know nothing about gets
fp32, which runs everywhere.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

# Precisions a CPU engine can run the backbone in. ``auto``: the fastest one this CPU holds accuracy with.
# ``int8``: a graph quantized on calibration photos (imagefit.engines.quantize); never chosen by ``auto``.
PRECISIONS = ("auto", "fp32", "bf16", "int8")


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The instruction-set flags of this CPU (empty where the kernel does not say, e.g. macOS)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_model() -> str:
    """The CPU's marketing name, or ``unknown CPU``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def has_bf16_matmul(flags: frozenset[str] | None = None) -> bool:
    """AMX tiles with bf16 (Sapphire Rapids and later): where OpenVINO's bf16 pays off.

    AVX512_BF16 alone (Cooper Lake, Zen 4) only converts and dot-products
    pairs; it was not measured here, so such a CPU keeps fp32.
    """
    f = cpu_flags() if flags is None else flags
    return "amx_bf16" in f and "amx_tile" in f


def bf16_supported(flags: frozenset[str] | None = None) -> bool:
    """Whether OpenVINO really computes in bf16 here (it silently uses fp32 on CPUs without bf16 instructions)."""
    f = cpu_flags() if flags is None else flags
    return has_bf16_matmul(f) or "avx512_bf16" in f


def importable(name: str) -> bool:
    """Whether a package can be imported, without importing it."""
    return importlib.util.find_spec(name) is not None


def default_cpu_engine(flags: frozenset[str] | None = None) -> tuple[str, str]:
    """``(engine, precision)`` for the CPU: OpenVINO bf16 with AMX, else ONNX Runtime fp32.

    Without AMX nothing measured was faster at equal accuracy, so fp32 stays
    (BENCHMARKS.md, bench/engines.py and bench/precision.py).
    """
    if has_bf16_matmul(flags) and importable("openvino"):
        return "openvino", "bf16"
    if importable("onnxruntime"):
        return "onnx", "fp32"
    return "torch", "fp32"


__all__ = ["PRECISIONS", "bf16_supported", "cpu_flags", "cpu_model", "default_cpu_engine", "has_bf16_matmul", "importable"]
