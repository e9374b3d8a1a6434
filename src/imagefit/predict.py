"""Prediction records, the CSV files made from them, and ``predict``'s whole job as one function.

:func:`predict_files` is what ``imagefit predict`` does (check the output, predict,
clip, write the CSV or Kaggle submission, optionally a grid of the photos); the
CLI only prints its result.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .data.load import SkipLog
from .errors import DataError, invalid
from .paths import atomic_write_text

if TYPE_CHECKING:
    from .model import Model

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


@dataclass
class Predictions:
    """One record per readable image, plus the files that were skipped.

    Each record is ``{"path", "label", "probability", "probabilities": {class: p},
    "unknown", "unknown_score"}``: ``unknown`` is True for a photo unlike the
    training photos (:mod:`imagefit.ood`), and both are None when the run has no
    detector (trained before imagefit had one) or it was switched off.
    """

    records: list[dict[str, Any]]
    classes: list[str]
    skipped: SkipLog = field(default_factory=SkipLog)
    indices: np.ndarray | None = None  # positions of records in the input list
    probs: np.ndarray | None = None
    unknown_scores: np.ndarray | None = None  # [n] detector scores (None: not available)
    unknown_threshold: float | None = None  # scores above it are unknown

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.records)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.records[i]

    def probabilities(self) -> np.ndarray:
        """``[n, classes]`` probabilities of the readable images (an empty array when there are none)."""
        return self.probs if self.probs is not None else np.zeros((0, len(self.classes)))

    def clipped(self, low: float) -> Predictions:
        """These predictions with probabilities clipped to ``[low, 1-low]`` (see ``predict --clip``)."""
        from .calibrate import clip_probabilities

        probs = clip_probabilities(self.probabilities(), low)
        paths = [Path(r["path"]) for r in self.records]
        records = make_records(paths, np.arange(len(paths)), probs, self.classes, self.unknown_scores, self.unknown_threshold)
        return Predictions(records, self.classes, self.skipped, self.indices, probs, self.unknown_scores, self.unknown_threshold)

    def to_csv(self, path: str | Path) -> Path:
        """Write ``path,label,prob_<class>...,unknown,unknown_score,error`` rows (atomic).

        ``unknown`` is ``true``/``false`` and ``unknown_score`` the detector's
        score; both are empty when the run has no detector or it was switched
        off. Skipped files get a row too, with empty values and the reason in
        ``error``, so that the CSV accounts for every input file.
        """
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["path", "label", *[f"prob_{c}" for c in self.classes], "unknown", "unknown_score", "error"])
        for r in self.records:
            # Records built by hand (or by an older imagefit) may lack the detector's fields.
            flag = "" if r.get("unknown") is None else str(r["unknown"]).lower()
            score = "" if r.get("unknown_score") is None else f"{r['unknown_score']:.6f}"
            w.writerow([r["path"], r["label"], *[f"{r['probabilities'][c]:.6f}" for c in self.classes], flag, score, ""])
        for p, reason in self.skipped.items:
            w.writerow([p, "", *["" for _ in self.classes], "", "", reason])
        return atomic_write_text(path, buf.getvalue())


def make_records(
    paths: list[Path],
    indices: np.ndarray,
    probs: np.ndarray,
    classes: list[str],
    unknown_scores: np.ndarray | None = None,
    unknown_threshold: float | None = None,
) -> list[dict[str, Any]]:
    """Build prediction records from probabilities (and, when given, the unknown-photo scores, one per row of ``probs``)."""
    out = []
    for n, (row, i) in enumerate(zip(probs, indices)):
        k = int(row.argmax())
        score = None if unknown_scores is None else float(unknown_scores[n])
        out.append(
            {
                "path": str(paths[int(i)]),
                "label": classes[k],
                "probability": float(row[k]),
                "probabilities": {c: float(row[j]) for j, c in enumerate(classes)},
                "unknown": None if score is None or unknown_threshold is None else bool(score > unknown_threshold),
                "unknown_score": score,
            }
        )
    return out


def default_output(kaggle: bool = False) -> Path:
    """``submission.csv`` with ``kaggle``, else ``predictions.csv`` (in the current folder)."""
    return Path("submission.csv" if kaggle else "predictions.csv")


def check_output(dest: str | Path, inputs: list[str | Path]) -> Path:
    """Refuse an output that would destroy something: an input file, a folder, or an existing non-CSV file.

    Also refuses an image file name (``--out pout/a.jpg``): CSV text under a
    photo's name would be read as a broken photo next time.

    Raises:
        ConfigError: naming the output and why (exit 2, a usage mistake).
        DataError: if an input path does not exist.
    """
    from .data.discover import list_images

    dest = Path(dest)
    allowed = "a new or existing .csv file that is not one of the inputs, e.g. predictions.csv"
    if dest.is_dir():
        raise invalid("--out", str(dest), f"{allowed} (this is a folder)")
    if dest.suffix.lower() in IMAGE_SUFFIXES:
        raise invalid("--out", str(dest), f"{allowed} (this is an image file name)")
    if dest.exists() and dest.suffix.lower() != ".csv":
        raise invalid("--out", str(dest), f"{allowed} (an existing non-CSV file is never overwritten)")
    target = dest.resolve()
    if any(Path(p).resolve() == target for p in list_images(list(inputs))):
        raise invalid("--out", str(dest), f"{allowed} (this file is one of the inputs)")
    return dest


@dataclass
class PredictResult:
    """What :func:`predict_files` did: the predictions, the CSV written, and its row count."""

    predictions: Predictions
    csv: Path
    rows: int
    missing: list[Path] = field(default_factory=list)  # unreadable photos given the uniform probability (Kaggle)
    report: Path | None = None


def predict_files(
    model: Model,
    paths: list[str | Path],
    out: str | Path | None = None,
    *,
    tta: bool | None = None,
    clip: float = 0.0,
    kaggle: bool = False,
    report: bool | str | Path = False,
    progress: bool = False,
    unknown: bool = True,
    unknown_threshold: float | None = None,
    unknown_accept: float | None = None,
) -> PredictResult:
    """Predict files and folders and write the CSV (``path,label,prob_<class>...,error``) or a Kaggle submission.

    The output is checked before any photo is read (:func:`check_output` and free
    space); nothing is written when no photo could be predicted, so an existing
    CSV is never replaced by an empty one.

    Args:
        model: A loaded :class:`~imagefit.model.Model`.
        paths: Image files and/or folders (recursive).
        out: CSV to write (default :func:`default_output`).
        tta: Average with the mirror image (None: as the run was saved).
        clip: Clip probabilities to ``[clip, 1-clip]`` (0: no clipping).
        kaggle: Write ``id,label`` rows sorted by numeric id, label = probability of the second class.
        report: Also write a grid of the photos with their predicted labels and probabilities:
            ``True`` for a PNG beside the CSV, or the PNG's path.
        progress: Show a progress bar.
        unknown: Score each photo with the run's unknown-photo detector (columns
            ``unknown``, ``unknown_score``; never in a Kaggle submission).
        unknown_threshold: A score above which a photo is unknown, instead of the run's.
        unknown_accept: Or: the share of the run's validation photos to accept (e.g. 0.99).

    Raises:
        ConfigError: the output would overwrite an input, a folder or a non-CSV file;
            a bad threshold or acceptance share.
        OutputError: the output's folder cannot be written.
        DataError: no photo could be predicted.
    """
    from .ood import check_unknown_options
    from .paths import check_writable

    check_unknown_options(unknown_threshold, unknown_accept)
    dest = check_output(out or default_output(kaggle), paths)
    check_writable(dest.parent, need_bytes=16 * 2**20)
    preds = model.predict(
        paths,
        tta=tta,
        progress=progress,
        unknown=unknown and not kaggle,
        unknown_threshold=unknown_threshold,
        unknown_accept=unknown_accept,
    )
    if not len(preds):
        reasons = "; ".join(f"{p}: {r}" for p, r in preds.skipped.items[:3])
        raise DataError(
            f"nothing to predict: no readable image in {', '.join(str(p) for p in paths)}" + (f" ({reasons})" if reasons else "")
        )
    if clip:
        preds = preds.clipped(clip)
    missing: list[Path] = []
    if kaggle:
        from .kaggle import write_submission

        missing = [Path(s["path"]) for s in preds.skipped.as_list()]
        write_submission(dest, [Path(r["path"]) for r in preds.records], preds.probabilities(), model.classes, missing)
    else:
        preds.to_csv(dest)
    grid = None
    if report:
        grid = write_prediction_grid(preds, dest.with_suffix(".png") if report is True else Path(report))
    return PredictResult(preds, dest, len(preds) + len(missing), missing, grid)


def write_prediction_grid(preds: Predictions, path: str | Path, n: int = 25, cols: int = 5) -> Path:
    """A PNG grid of the first ``n`` photos captioned with the predicted label and its probability.

    The caption also names the runner-up when it is within 0.25 of the top class,
    so that an uncertain answer looks uncertain.
    """
    from .paths import atomic_write_bytes
    from .report.plots import image_grid

    items = []
    for r in preds.records[:n]:
        ranked = sorted(r["probabilities"].items(), key=lambda kv: -kv[1])
        caption = f"{Path(r['path']).name}\n{ranked[0][0]} {ranked[0][1]:.3f}"
        if len(ranked) > 1 and ranked[0][1] - ranked[1][1] < 0.25:
            caption += f" ({ranked[1][0]} {ranked[1][1]:.3f})"
        items.append({"path": r["path"], "caption": caption})
    title = f"{min(n, len(preds))} of {len(preds)} photos: predicted label and probability"
    return atomic_write_bytes(path, image_grid(items, title=title, cols=cols))
