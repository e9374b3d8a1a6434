"""``imagefit train``: the Python API's ``imagefit.train`` with one flag per config field (see :mod:`._options`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from ._common import stdout
from ._options import with_config_options


@with_config_options
def train(
    # Optional so that `imagefit train --resume --out RUN` works: a resumed run reads its data from RUN.
    data: Annotated[
        Path | None, typer.Argument(help="Class folders, train/+val/ folders, cat.0.jpg-style names, or a CSV (not needed with --resume).")
    ] = None,
    val: Annotated[Path | None, typer.Option(help="Separate validation data.")] = None,
    out: Annotated[Path | None, typer.Option(help="Run folder (default runs/<model>-<strategy>-<time>).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the interrupted run in --out.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    **options: Any,
) -> None:
    """Train a classifier; writes model.safetensors, imagefit.json and history.csv to a run folder."""
    from ..config import RunConfig
    from ..errors import invalid

    # Bad values fail here, before torch is imported or any photo is read.
    RunConfig.from_options(**options)
    if data is None and not resume:
        raise invalid("DATA", None, "a data folder or CSV (only `train --resume --out RUN` may leave it out)")
    if resume and out is None:
        raise invalid("--out", None, "with --resume, the folder of the run to continue")
    import imagefit

    from ..evaluate import summary_line

    run = imagefit.train(data, val=val, out=out, resume=resume, progress=True, device=device, **options)  # type: ignore[arg-type]
    if os.environ.get("RANK", "0") != "0":
        return  # under torchrun only rank 0 reports
    stdout.print(f"validation: {summary_line(run.metrics)}")
    stdout.print(f"run folder: {run.path}  ({run.seconds:.1f} s)")
