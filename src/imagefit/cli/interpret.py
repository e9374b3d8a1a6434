"""``imagefit interpret``: :func:`imagefit.interpret.interpret`, printed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import Tta, console, stdout


def interpret(
    run: Annotated[Path, typer.Argument(help="Run folder.")],
    data: Annotated[
        Path | None, typer.Argument(help="Labeled data, found as `train` finds it (default: the run's own training data).")
    ] = None,
    val: Annotated[Path | None, typer.Option(help="Separate validation data.")] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default RUN/interpret-<time>).")] = None,
    top: Annotated[int, typer.Option(help="How many top losses to list and show.")] = 16,
    folds: Annotated[int, typer.Option(help="k of the k-fold out-of-fold predictions on the training photos.")] = 5,
    low: Annotated[float, typer.Option(help="Flag a training photo when its label's out-of-fold probability is below this...")] = 0.2,
    high: Annotated[float, typer.Option(help="...and another class's probability is at least this.")] = 0.7,
    tta: Tta = None,
) -> None:
    """Top losses, most confused class pairs, and likely-mislabeled training photos (CSV files + report.html)."""
    from rich.table import Table

    from ..interpret import interpret as run_interpret

    res = run_interpret(run, data, val=val, out=out, top=top, folds=folds, low=low, high=high, tta=tta, progress=True)
    m = res.metrics
    stdout.print(f"validation: accuracy {m['accuracy']:.4f}, log loss {m['log_loss']:.4f} on {m['n_images']} photos")
    table = Table("photo", "true", "predicted", "p", "loss", title=f"top {min(5, len(res.top_losses))} losses")
    for r in res.top_losses[:5]:
        table.add_row(
            Path(r["path"]).name,
            r["label"],
            r["predicted"],
            f"{r['p_predicted']:.3f}",
            f"{r['loss']:.2f}",
            style="red" if r["wrong"] else None,
        )
    stdout.print(table)
    if res.confused:
        stdout.print("most confused: " + "; ".join(f"{p['label']} -> {p['predicted']} ({p['count']})" for p in res.confused[:5]))
    o = res.oof
    if o["folds"]:
        stdout.print(
            f"training photos: {o['n_flagged']} of {o['n_train']} flagged as likely mislabeled ({o['folds']}-fold out-of-fold accuracy {o['accuracy']:.4f})"
        )
        for r in res.suspects[:10]:
            stdout.print(f"  {r['path']}: given {r['label']} ({r['p_label']:.3f}), looks {r['suggested']} ({r['p_suggested']:.3f})")
    else:
        console.print("[yellow]training photos: too few per class for k-fold; no mislabel check[/]")
    stdout.print(f"report: {res.report}")
