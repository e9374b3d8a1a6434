"""``imagefit predict``: :func:`imagefit.predict.predict_files`, printed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import console, print_skipped, stdout


def predict(
    run: Annotated[Path, typer.Argument(help="Run folder.")],
    paths: Annotated[list[Path], typer.Argument(help="Image files and/or folders (recursive).")],
    out: Annotated[
        Path | None,
        typer.Option(help="CSV to write (default predictions.csv, or submission.csv with --kaggle); never an input or a non-CSV file."),
    ] = None,
    tta: Annotated[bool, typer.Option("--tta", help="Average with the mirror image.")] = False,
    clip: Annotated[
        float,
        typer.Option(
            help="Clip probabilities to [CLIP, 1-CLIP], e.g. 0.005: caps the log loss of a confident mistake at -log(CLIP). "
            "A blunt tool next to the temperature scaling every model already has: it costs a little on every confident right answer.",
        ),
    ] = 0.0,
    kaggle: Annotated[
        bool,
        typer.Option(
            "--kaggle",
            help="Write a Kaggle submission: id,label rows sorted by the numeric id of 1.jpg-style names, label = probability of the second class.",
        ),
    ] = False,
    report: Annotated[
        bool,
        typer.Option(
            "--report", help="Also write a grid of the photos with their predicted labels and probabilities (PNG beside the CSV)."
        ),
    ] = False,
) -> None:
    """Predict images; writes path, label and one (calibrated) probability column per class."""
    import imagefit
    from imagefit.predict import predict_files

    model = imagefit.load(run)
    res = predict_files(model, list(paths), out, tta=tta, clip=clip, kaggle=kaggle, report=report, progress=True)
    print_skipped(res.predictions.skipped.as_list())
    if kaggle:
        if res.missing:
            console.print(f"[yellow]{len(res.missing)} unreadable photo(s) got the uniform probability so that every id has a row[/]")
        what = f"label = P({model.classes[1]})" if len(model.classes) == 2 else "one probability column per class"
        stdout.print(f"{res.rows} rows ({what}) -> {res.csv}")
    else:
        stdout.print(f"{res.rows} predictions -> {res.csv}")
    if res.report is not None:
        stdout.print(f"report: {res.report}")
