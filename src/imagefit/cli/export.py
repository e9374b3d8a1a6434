"""``imagefit export``: :func:`imagefit.export.export_model`, printed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import stdout


def export(
    run: Annotated[Path, typer.Argument(help="Run folder.")],
    out: Annotated[Path, typer.Argument(help="Output: a .onnx file, an OpenVINO .xml (with its .bin), or a folder for --format web.")],
    format: Annotated[
        str, typer.Option("--format", "-f", help="onnx, openvino or web (a static page classifying photos in the browser).")
    ] = "onnx",
    any_size: Annotated[
        bool, typer.Option("--any-size", help="Take one photo of any size and resize + crop inside the graph (web pages always do).")
    ] = False,
) -> None:
    """Export a trained model: one file with pixels in and calibrated probabilities out, or an offline web page."""
    from ..export import export_model

    path = export_model(run, out, format, any_size=any_size)
    stdout.print(f"exported: {path}")
