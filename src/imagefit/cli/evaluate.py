"""``imagefit evaluate``: :func:`imagefit.evaluation.evaluate_run`, printed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import Tta, print_skipped, stdout


def evaluate(
    run: Annotated[Path, typer.Argument(help="Run folder.")],
    data: Annotated[Path, typer.Argument(help="Labeled data (any layout).")],
    tta: Tta = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Metrics JSON (default RUN/eval-<time>.json); report.html and its PNGs go to the folder of the same name without .json."
        ),
    ] = None,
    labels_from_filename: Annotated[bool, typer.Option("--labels-from-filename")] = False,
) -> None:
    """Evaluate a trained model on labeled data; prints and saves the metrics as JSON, writes report.html."""
    from ..evaluate import summary_line
    from ..evaluation import evaluate_run

    res = evaluate_run(run, data, out, tta=tta, labels_from_filename=labels_from_filename, progress=True)
    metrics = res.metrics
    stdout.print(summary_line(metrics))
    cal = metrics["calibration"]
    stdout.print(
        f"calibration: T {cal['temperature']:.3f}; log loss {cal['log_loss_before']:.4f} uncalibrated -> {cal['log_loss_after']:.4f}; "
        f"ECE {cal['ece_before']:.4f} -> {cal['ece_after']:.4f}"
    )
    print_skipped(metrics["skipped"])
    stdout.print(f"metrics: {res.path}")
    stdout.print(f"report: {res.report}")
