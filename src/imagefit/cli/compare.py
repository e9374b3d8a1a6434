"""``imagefit compare``: :mod:`imagefit.report.compare`, printed to fit the terminal."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from ._common import console, out_json, stdout


def compare(
    runs: Annotated[list[Path], typer.Argument(help="Run folders.")],
    out: Annotated[Path | None, typer.Option(help="Folder for compare.png, compare.csv and report.html (default compare-<time>).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of the table.")] = False,
) -> None:
    """Compare runs' validation metrics and the settings that differ between them (learning rate, model, strategy ...)."""
    from ..report.compare import comparable_note, leaderboard_table, rich_table, write_compare_report
    from ..report.compare import compare as compare_runs

    rows = compare_runs(runs)
    report = write_compare_report(rows, out or Path(f"compare-{time.strftime('%Y%m%d-%H%M%S')}"))
    if as_json:
        out_json(rows)
    else:
        stdout.print(rich_table(rows, width=stdout.width))
        for r in rows:  # runs made by a search (--budget, or --model auto stepping up): every candidate
            if r.get("search") and r["search"].get("rows"):
                stdout.print(leaderboard_table(r["search"], r["name"]))
    note = comparable_note(rows)
    if note:
        console.print(f"[yellow]{note}[/]")
    # With --json, stdout carries the JSON alone so it can be piped.
    (console if as_json else stdout).print(f"report: {report}")
