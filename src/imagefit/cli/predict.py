"""``imagefit predict``: :func:`imagefit.predict.predict_files`, printed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ._common import Tta, console, print_skipped, stdout


def predict(
    run: Annotated[Path, typer.Argument(help="Run folder.")],
    paths: Annotated[list[Path], typer.Argument(help="Image files and/or folders (recursive).")],
    out: Annotated[
        Path | None,
        typer.Option(help="CSV to write (default predictions.csv, or submission.csv with --kaggle); never an input or a non-CSV file."),
    ] = None,
    tta: Tta = None,
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
    unknown: Annotated[
        str,
        typer.Option(
            help="on: flag photos unlike the training photos (columns unknown and unknown_score; empty for a run trained "
            "without a detector); off: leave both columns empty. Never in --kaggle output.",
            metavar="[on|off]",
        ),
    ] = "on",
    unknown_threshold: Annotated[
        float | None,
        typer.Option(
            help="Score (cosine distance to the nearest training photo, 0..2) above which a photo is unknown; default: the run's."
        ),
    ] = None,
    unknown_accept: Annotated[
        float | None,
        typer.Option(help="Or: set the threshold to accept this share of the run's validation photos (the run's default is 0.95)."),
    ] = None,
) -> None:
    """Predict images; writes path, label, one (calibrated) probability column per class, and whether each photo looks unknown.

    Under ``torchrun --nproc-per-node N -m imagefit predict ...`` the photos are shared out over
    the ranks and rank 0 writes the one CSV, identical to a single process's.
    """
    from ..errors import invalid
    from ..ood import check_unknown_options

    if unknown not in ("on", "off"):
        raise invalid("--unknown", unknown, ["on", "off"])
    check_unknown_options(unknown_threshold, unknown_accept)

    from ..predict_dist import PeerAbort, predict_distributed

    try:
        res = predict_distributed(
            run,
            list(paths),
            out,
            tta=tta,
            clip=clip,
            kaggle=kaggle,
            report=report,
            progress=True,
            unknown=unknown == "on",
            unknown_threshold=unknown_threshold,
            unknown_accept=unknown_accept,
        )
    except PeerAbort as exc:
        raise SystemExit(exc.exit_code) from None  # rank 0 prints the one error line
    if res is not None:  # None: a torchrun rank other than 0, which writes and prints nothing
        _print_result(res, kaggle=kaggle, unknown=unknown == "on")


def _print_result(res: Any, *, kaggle: bool, unknown: bool) -> None:
    print_skipped(res.predictions.skipped.as_list())
    preds = res.predictions
    if not kaggle and unknown:
        if preds.unknown_scores is None:
            console.print("[yellow]unknown: not available (this run was trained without an unknown-photo detector)[/]")
        else:
            n = sum(bool(r["unknown"]) for r in preds.records)
            stdout.print(f"{n} of {len(preds)} photo(s) look unlike the training photos (unknown, score > {preds.unknown_threshold:.4f})")
    if kaggle:
        if res.missing:
            console.print(f"[yellow]{len(res.missing)} unreadable photo(s) got the uniform probability so that every id has a row[/]")
        classes = preds.classes
        what = f"label = P({classes[1]})" if len(classes) == 2 else "one probability column per class"
        stdout.print(f"{res.rows} rows ({what}) -> {res.csv}")
    else:
        stdout.print(f"{res.rows} predictions -> {res.csv}")
    if res.report is not None:
        stdout.print(f"report: {res.report}")
