"""``imagefit lr-find``: fastai's learning-rate finder over the strategy the options choose (see :mod:`imagefit.train.lr_find`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ._common import stdout
from ._options import with_config_options


@with_config_options
def lr_find(
    data: Annotated[Path, typer.Argument(help="Class folders, train/+val/ folders, cat.0.jpg-style names, or a CSV.")],
    val: Annotated[Path | None, typer.Option(help="Separate validation data.")] = None,
    out: Annotated[Path | None, typer.Option(help="Folder for lr_find.png (default runs/lr-find-<time>).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    **options: Any,
) -> None:
    """Sweep learning rates exponentially for a few mini-batches, plot loss against learning rate, print the suggestion."""
    from ..config import RunConfig

    RunConfig.from_options(**options)  # bad values fail before torch is imported
    from ..train.lr_find import lr_find as find

    options.pop("lr", None)  # the sweep chooses the learning rate
    found = find(data, val=val, out=out, device=device, progress=True, **options)
    stdout.print(f"suggested learning rate: {found.suggestion:.2g}  (fastai's valley rule; plot {found.plot_path})")
    stdout.print(f"use it: imagefit train {data} --lr {found.suggestion:.2g}  (or --lr auto)")
