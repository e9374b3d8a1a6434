"""``imagefit inspect``: :mod:`imagefit.inspect`, printed. Imports no torch unless ``--augment`` asks for a preview."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ..bounds import NEAR_THRESHOLD
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
    model: Annotated[
        str, typer.Option(help="Backbone whose preprocessing --augment's preview uses, and whose features --near compares.")
    ] = "lite0",
    near: Annotated[
        bool,
        typer.Option(
            "--near",
            help="Also find near-duplicates (resized, re-encoded, cropped or mirrored copies) by the cosine of --model's "
            "pretrained features: loads the model (features come from the cache when the set was trained on).",
        ),
    ] = False,
    near_threshold: Annotated[
        float, typer.Option(help="Cosine similarity from which --near counts two photos as the same picture.", min=0.0, max=1.0)
    ] = NEAR_THRESHOLD,
    sheet: Annotated[
        Path | None, typer.Option(help="Where the contact sheet of duplicate pairs goes (default: beside --report, else none).")
    ] = None,
) -> None:
    """Class counts, imbalance ratio, unreadable files, image size range, and exact (with --near also near) duplicates."""
    from .. import inspect as lib

    if augment is not None and augment not in AUGMENTS:
        raise invalid("augment", augment, AUGMENTS)
    rep = lib.inspect_data(data, labels_from_filename=labels_from_filename)
    # Exact copies cost one read of each file and no model; near ones need the backbone (torch).
    dups = lib.data_duplicates(data, near=near, model=model, threshold=near_threshold, labels_from_filename=labels_from_filename)
    rep["duplicates"] = dups.to_dict()
    rep["duplicates"]["near_searched"] = near
    written = []
    if sheet is None and report is not None:
        sheet = report.with_name(f"{report.stem}-duplicates.png")
    if sheet is not None and dups.pairs:
        written.append(lib.write_contact_sheet(dups, sheet))
        rep["duplicates"]["sheet"] = str(sheet)
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
    _print_duplicates(rep["duplicates"])
    for path in written:
        stdout.print(f"{'preview' if path.suffix == '.png' else 'report'}: {path}")


def _print_duplicates(d: dict[str, Any], show: int = 20) -> None:
    kinds = "exact and near" if d["near_searched"] else "exact (add --near for resized, re-encoded or mirrored copies)"
    if not d["pairs"]:
        stdout.print(f"  duplicates ({kinds}): none")
        return
    counts = ", ".join(f"{k} {v['exact']} exact + {v['near']} near" for k, v in d["counts"].items())
    stdout.print(f"  duplicates ({kinds}): {len(d['pairs'])} pair(s): {counts}")
    for p in d["pairs"][:show]:
        how = "exact" if p["exact"] else f"cosine {p['similarity']:.3f}"
        stdout.print(f"    {p['split_a']}:{p['a']}  {p['split_b']}:{p['b']}  ({how})", soft_wrap=True)
    if len(d["pairs"]) > show:
        stdout.print(f"    ... {len(d['pairs']) - show} more (--json lists all)")
