"""The last phase: calibrate on the validation logits, build the run record, save.

The run folder becomes a run only here: ``imagefit.json`` is written last
(atomically, after the weights, ``metrics.json`` and the report), so a run
that fails earlier leaves a folder ``imagefit.load`` refuses and ``--resume``
continues.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from ..artifacts import save_run, versions
from ..calibrate import fit_temperature, scaled_probs
from ..evaluate import calibrated_metrics
from ..models.spec import BackboneSpec
from ..paths import atomic_write_json
from ..record import BackboneInfo, DataInfo, HeadInfo, RunRecord
from ..tracking import log_run_end
from ..ui import UI, plain
from .session import OpenedRun, RunContext


@dataclass
class ValidationLogits:
    """The final model's logits on the readable validation photos."""

    logits: np.ndarray
    y: np.ndarray
    paths: list[Path]


@dataclass
class Calibrated:
    """Temperature scaling's result and the validation metrics of the calibrated model."""

    temperature: float
    probs_uncal: np.ndarray
    probs: np.ndarray
    metrics: dict[str, Any]


def calibrate(ctx: RunContext, val: ValidationLogits) -> Calibrated:
    """Fit the temperature on the validation logits; the metrics are the calibrated model's.

    Accuracy does not change with T; the log loss is the one users will get.
    T is fitted on this same set, so that log loss is slightly optimistic: the
    before/after figures are kept under ``metrics["calibration"]``.
    """
    temperature = fit_temperature(val.logits, val.y)
    probs_uncal = scaled_probs(val.logits, 1.0)
    probs = scaled_probs(val.logits, temperature)
    metrics = calibrated_metrics(val.y, probs_uncal, probs, temperature, ctx.train_set.classes, ctx.train_set.counts())
    cal = metrics["calibration"]
    ctx.ui.info(
        f"calibration: temperature {temperature:.3f}, validation log loss {cal['log_loss_before']:.4f} -> "
        f"{cal['log_loss_after']:.4f}, ECE {cal['ece_before']:.4f} -> {cal['ece_after']:.4f}"
    )
    return Calibrated(float(temperature), probs_uncal, probs, metrics)


def warn_if_baseline(ctx: RunContext, cal: Calibrated) -> None:
    """Say so when the model is no better than always answering the most common validation class."""
    counts = np.bincount(np.asarray(ctx.val_set.labels, dtype=np.int64), minlength=len(ctx.train_set.classes))
    majority = float(counts.max() / max(1, counts.sum()))
    accuracy = float(cal.metrics.get("accuracy", float("nan")))
    if accuracy <= majority + 1e-9:
        ctx.ui.warn(
            f"validation accuracy {accuracy:.4f} is no better than always answering the most common class ({majority:.4f}): "
            "this model has learned nothing useful"
        )


def build_record(
    ctx: RunContext, opened: OpenedRun, spec: BackboneSpec, digest: str, out_features: int, cal: Calibrated, start: float
) -> RunRecord:
    """The run record of a finished run, with the settings actually used."""
    s = ctx.settings
    val = None if opened.val is None else str(opened.val)
    return RunRecord(
        classes=list(ctx.train_set.classes),
        backbone=BackboneInfo(spec.name, spec.num_features, spec.architecture, digest, spec.weights),
        preprocess=s.preprocess,
        head=HeadInfo(s.hidden, s.dropout, out_features),
        temperature=cal.temperature,
        config=ctx.config,
        settings=s.to_dict(),
        train_counts=ctx.train_set.counts(),
        data=DataInfo(str(opened.data), val, len(ctx.train_set), len(ctx.val_set)),
        metrics={"val": cal.metrics},
        skipped=ctx.skipped.as_list(),
        versions=versions(),
        seconds=round(time.time() - start, 2),
        features=ctx.features,
    )


def save(ctx: RunContext, classifier: nn.Module, record: RunRecord, cal: Calibrated, val: ValidationLogits) -> None:
    """Write ``metrics.json``, the report, the weights, and ``imagefit.json`` last."""
    out = ctx.out
    atomic_write_json(out / "metrics.json", cal.metrics)
    if ctx.skipped:
        ctx.ui.info(f"[yellow]skipped {len(ctx.skipped)} unreadable file(s):[/]")
        for p, r in ctx.skipped.items:
            ctx.ui.info(f"  {plain(p)}: {plain(r)}")  # file names may hold "[/]" or non-UTF-8 bytes
    write_report(out, record.to_dict(), cal, list(ctx.csv.rows), val, ctx.ui)
    save_run(out, classifier, record)
    # MLflow logging that fails is said by its worker on stderr even when the UI is quiet: never a silent loss.
    log_run_end(ctx.trackers, out, cal.metrics, note=ctx.ui.info if ctx.ui.enabled else None)


def write_report(out: Path, meta: dict[str, Any], cal: Calibrated, history: list[dict[str, Any]], val: ValidationLogits, ui: UI) -> None:
    """``report.html`` + PNGs in the run folder.

    A report that fails (a full disk, a broken font cache) is a warning: it
    never costs the trained run.
    """
    from ..report import write_run_report

    try:
        path = write_run_report(out, meta, cal.metrics, history, val.paths, val.y, cal.probs_uncal, cal.probs)
    except (OSError, ValueError, RuntimeError) as exc:
        ui.warn(f"report not written: {exc}")
        return
    ui.info(f"report: {path}")
