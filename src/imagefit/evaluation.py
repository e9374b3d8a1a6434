"""``evaluate``'s whole job as one function: metrics on labeled data, saved as JSON, with an HTML report."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class EvaluationResult:
    """What :func:`evaluate_run` wrote: the metrics, their JSON file and the report."""

    metrics: dict[str, Any]
    path: Path
    report: Path


def default_metrics_path(run: str | Path) -> Path:
    """``RUN/eval-<YYYYmmdd-HHMMSS>.json``."""
    return Path(run) / f"eval-{time.strftime('%Y%m%d-%H%M%S')}.json"


def evaluate_run(
    run: str | Path,
    data: str | Path,
    out: str | Path | None = None,
    *,
    tta: bool | None = None,
    labels_from_filename: bool = False,
    progress: bool = False,
) -> EvaluationResult:
    """Evaluate the model of ``run`` on ``data``; write the metrics JSON and ``report.html``.

    Args:
        run: Run folder.
        data: Labeled data (any layout ``train`` reads).
        out: Metrics JSON (default :func:`default_metrics_path`); the report and its
            PNGs go to the folder of the same name without ``.json``.
        tta: Average with the mirror image (None: as the run was saved).
        labels_from_filename: Read labels from names like ``cat.0.jpg``.
        progress: Show a progress bar.

    Raises:
        ArtifactError: ``run`` is not a run folder.
        OutputError: ``out`` (or the run folder) cannot be written; checked before any photo is read.
        DataError: the data cannot be used.
    """
    import imagefit

    from .paths import atomic_write_json, check_writable
    from .report import write_eval_report

    model = imagefit.load(run)
    path = Path(out) if out is not None else default_metrics_path(run)
    check_writable(path.parent, need_bytes=16 * 2**20)
    ev = model.evaluate_details(data, tta=tta, progress=progress, labels_from_filename=labels_from_filename)
    atomic_write_json(path, ev.metrics)
    folder = path.with_suffix("") if path.suffix else path.with_name(path.name + "-report")
    report = write_eval_report(folder, model.meta, ev, run)
    return EvaluationResult(ev.metrics, path, report)
