"""Export: ONNX graphs for the engines, and whole trained models as portable files.

:func:`export_onnx` (any module -> an ONNX graph) is what the inference
engines use. :func:`export_model` (a run folder -> an ONNX file, OpenVINO IR
or a static web page) is imported on first use: it loads runs, and the
engines, which sit below :mod:`imagefit.model`, must not import that.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .graph import export_onnx

if TYPE_CHECKING:
    from .bundle import FORMATS, export_model


def __getattr__(name: str) -> Any:
    if name in ("export_model", "FORMATS"):
        from . import bundle

        return getattr(bundle, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["FORMATS", "export_model", "export_onnx"]
