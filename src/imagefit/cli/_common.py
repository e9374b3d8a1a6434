"""What every command shares: where results go, JSON output, the list of skipped files."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console

from ..ui import console, plain

# --tta/--no-tta of predict, evaluate and interpret: unset follows the run (a --budget run may have chosen flip averaging).
Tta = Annotated[
    bool | None,
    typer.Option(
        "--tta/--no-tta",
        help="Average with the mirror image (--no-tta: never). Default: as the run was saved (--budget runs may choose it).",
    ),
]

# Results go to stdout (pipe them); progress, warnings and skipped-file lists to stderr (``console``).
stdout = Console(highlight=False, soft_wrap=True)

__all__ = ["console", "out_json", "print_skipped", "stdout"]


def out_json(obj: object) -> None:
    """Print ``obj`` as indented JSON on stdout, alone, so it can be piped."""
    typer.echo(json.dumps(obj, indent=2))


def print_skipped(items: list[dict[str, str]], indent: str = "") -> None:
    """List unreadable files on stderr, one per line."""
    if items:
        console.print(f"{indent}[yellow]skipped {len(items)} unreadable file(s):[/]")
        for it in items:
            console.print(f"{indent}  {plain(it['path'])}: {plain(it['reason'])}")
