"""``imagefit kaggle-prep`` and ``imagefit score``: :mod:`imagefit.kaggle`, printed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import console, out_json, stdout


def kaggle_prep(
    train_dir: Annotated[Path, typer.Argument(help="Flat Kaggle folder of cat.0.jpg, dog.1.jpg ...")],
    out: Annotated[Path | None, typer.Option(help="Where the class folders go (default TRAIN_DIR-by-class).")] = None,
    undo: Annotated[bool, typer.Option("--undo", help="Remove what an earlier kaggle-prep made (from its manifest).")] = False,
) -> None:
    """Organise a flat Kaggle folder into class folders of links (symbolic, else hard); nothing is copied."""
    from ..kaggle import prep
    from ..kaggle import undo as undo_prep

    if undo:
        res = undo_prep(train_dir, out)
        stdout.print(f"removed {sum(res.counts.values())} link(s) from {res.out}: " + ", ".join(f"{k} {v}" for k, v in res.counts.items()))
        if res.ignored:
            console.print(f"[yellow]kept {len(res.ignored)} file(s) that are not links made by kaggle-prep, e.g. {res.ignored[0]}[/]")
        return
    res = prep(train_dir, out)
    stdout.print(
        f"{res.out}: " + ", ".join(f"{k}/ {v} photos" for k, v in res.counts.items()) + f" ({res.method}s to {res.source}, nothing copied)"
    )
    if res.ignored:
        console.print(f"[yellow]ignored {len(res.ignored)} file(s) without a label in the name, e.g. {res.ignored[0].name}[/]")
    stdout.print(f"manifest: {res.manifest} (undo with: imagefit kaggle-prep {train_dir}{f' --out {out}' if out else ''} --undo)")
    stdout.print(f"train with: imagefit train {res.out}")


def score(
    submission: Annotated[Path, typer.Argument(help="Submission CSV: id,label (probability of class 1).")],
    solution: Annotated[Path, typer.Argument(help="Solution CSV: id,label (0 or 1).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Log loss (clipped at 1e-15, as Kaggle) and accuracy of a submission against a solution."""
    from ..kaggle import score as score_submission

    res = score_submission(submission, solution)
    if as_json:
        out_json(res)
        return
    typer.echo(f"log loss {res['log_loss']:.5f}  accuracy {res['accuracy']:.4f}  ({res['n']} rows)")
