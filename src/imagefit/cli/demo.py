"""``imagefit demo``: train, evaluate and predict on the bundled sample."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from ._common import stdout


def demo(
    out: Annotated[Path | None, typer.Option(help="Run folder (default runs/demo-<time>).")] = None,
) -> None:
    """Train, evaluate and predict on the bundled sample of cats and dogs."""
    import imagefit

    from ..evaluate import summary_line

    sample = Path(__file__).resolve().parents[1] / "sample_data"
    out = out or Path("runs") / f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    stdout.print(f"[bold]imagefit demo[/]: training lite0 (linear) on {sample} (see its README for provenance)")
    run = imagefit.train(sample / "train", val=sample / "val", out=out, progress=True, seed=0)
    model = imagefit.load(run.path)
    metrics = model.evaluate(sample / "val")
    preds = model.predict([sample / "val"])
    csv_path = preds.to_csv(run.path / "predictions.csv")
    stdout.print(f"validation: {summary_line(metrics)}")
    for r in preds.records[:3]:
        stdout.print(f"  {Path(r['path']).name}: {r['label']} ({r['probability']:.3f})")
    stdout.print(f"written: {run.path}/ model.safetensors, imagefit.json, history.csv, metrics.json; predictions {csv_path}")
