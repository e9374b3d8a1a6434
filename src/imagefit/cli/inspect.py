"""``imagefit inspect``: :mod:`imagefit.inspect`, printed. Imports no torch unless ``--augment`` asks for a preview."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..config import AUGMENTS
from ..errors import invalid
from ._common import out_json, print_skipped, stdout


def inspect_cmd(
    data: Annotated[Path, typer.Argument(help="Data folder or CSV.")],
    labels_from_filename: Annotated[bool, typer.Option("--labels-from-filename")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    report: Annotated[
        Path | None,
        typer.Option("--report", help="Also write an HTML report here, with a grid of sample photos per class (PNG beside it)."),
    ] = None,
    augment: Annotated[
        str | None,
        typer.Option(
            help="Also write a preview grid of photos as training augments them: none, light or heavy.", metavar="[none|light|heavy]"
        ),
    ] = None,
    preview: Annotated[Path, typer.Option(help="Where --augment's preview PNG goes.")] = Path("augment-preview.png"),
    model: Annotated[str, typer.Option(help="Backbone whose preprocessing --augment's preview uses.")] = "lite0",
) -> None:
    """Class counts, imbalance ratio, unreadable files and image size range."""
    from .. import inspect as lib

    if augment is not None and augment not in AUGMENTS:
        raise invalid("augment", augment, AUGMENTS)
    rep = lib.inspect_data(data, labels_from_filename=labels_from_filename)
    written = []
    if report is not None:
        written.append(lib.write_inspect_report(data, rep, report, labels_from_filename=labels_from_filename))
    if augment is not None:
        written.append(lib.augment_preview(data, preview, augment, model=model, labels_from_filename=labels_from_filename))
    if as_json:
        out_json(rep)
        return
    stdout.print(f"{rep['data']}: layout '{rep['layout']}', classes {rep['classes']}")
    for name, s in rep["splits"].items():
        size = s.get("size")
        size_text = f", sizes {size['min'][0]}x{size['min'][1]} .. {size['max'][0]}x{size['max'][1]}" if size else ""
        ratio = f", imbalance {s['imbalance_ratio']:.2f}" if s["imbalance_ratio"] else ""
        stdout.print(f"  {name}: {s['n_readable']}/{s['n_files']} readable, counts {s['counts']}{ratio}{size_text}")
        print_skipped(s["unreadable"], indent="    ")
    for path in written:
        stdout.print(f"{'preview' if path.suffix == '.png' else 'report'}: {path}")
