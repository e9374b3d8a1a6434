"""The CPU engine and precision are chosen from the CPU's flags: AMX gets OpenVINO bf16, anything else fp32."""

from __future__ import annotations

import pytest
import torch

from imagefit import engine as engine_mod
from imagefit.engines import cpu
from imagefit.errors import ConfigError

SAPPHIRE_RAPIDS = frozenset({"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8"})
EPYC_ZEN2 = frozenset({"avx2", "fma", "f16c"})


def test_amx_cpu_defaults_to_openvino_bf16() -> None:
    pytest.importorskip("openvino")
    assert cpu.default_cpu_engine(SAPPHIRE_RAPIDS) == ("openvino", "bf16")


def test_avx2_only_cpu_keeps_onnx_runtime_fp32() -> None:
    assert cpu.default_cpu_engine(EPYC_ZEN2) == ("onnx", "fp32")
    assert not cpu.bf16_supported(EPYC_ZEN2)
    # bf16 dot products without AMX were not measured faster: fp32 stays the default there.
    assert cpu.default_cpu_engine(EPYC_ZEN2 | {"avx512_bf16"}) == ("onnx", "fp32")


def test_flags_of_this_machine_are_read() -> None:
    flags = cpu.cpu_flags()
    assert not flags or "sse2" in flags or "fp" in flags  # x86 or arm, where the kernel says


@pytest.mark.parametrize(
    ("flags", "engine", "precision", "expected"),
    [
        (SAPPHIRE_RAPIDS, "auto", "auto", ("openvino", "bf16")),
        (SAPPHIRE_RAPIDS, "auto", "fp32", ("onnx", "fp32")),
        (SAPPHIRE_RAPIDS, "openvino", "auto", ("openvino", "bf16")),
        (SAPPHIRE_RAPIDS, "onnx", "auto", ("onnx", "fp32")),
        (EPYC_ZEN2, "auto", "auto", ("onnx", "fp32")),
        (EPYC_ZEN2, "openvino", "auto", ("openvino", "fp32")),
    ],
)
def test_engine_and_precision_choice(
    monkeypatch: pytest.MonkeyPatch, flags: frozenset[str], engine: str, precision: str, expected: tuple[str, str]
) -> None:
    pytest.importorskip("openvino")
    monkeypatch.setattr(cpu, "cpu_flags", lambda: flags)
    monkeypatch.delenv("IMAGEFIT_ENGINE", raising=False)
    monkeypatch.delenv("IMAGEFIT_PRECISION", raising=False)
    assert engine_mod._choose(engine, precision, torch.device("cpu")) == expected


def test_precision_from_environment_and_refusals(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu, "cpu_flags", lambda: EPYC_ZEN2)
    monkeypatch.delenv("IMAGEFIT_ENGINE", raising=False)
    monkeypatch.setenv("IMAGEFIT_PRECISION", "fp32")
    assert engine_mod._choose("auto", "auto", torch.device("cpu")) == ("onnx", "fp32")
    monkeypatch.setenv("IMAGEFIT_PRECISION", "fp8")
    with pytest.raises(ConfigError, match="invalid precision: received 'fp8'; allowed: auto, fp32, bf16"):
        engine_mod._choose("auto", "auto", torch.device("cpu"))
    # bf16 asked for on a CPU without bf16 instructions: OpenVINO would silently run fp32.
    with pytest.raises(ConfigError, match="no bf16 instructions"):
        engine_mod._choose("openvino", "bf16", torch.device("cpu"))
    with pytest.raises(ConfigError, match="precision for engine onnx"):
        engine_mod._choose("onnx", "bf16", torch.device("cpu"))
