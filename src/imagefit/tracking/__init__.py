"""Run records: TensorBoard event files in every run folder, and MLflow on request.

Both are training callbacks (:class:`~imagefit.train.callbacks.Callback`) fed
the per-epoch logs, plus an end-of-run step (:func:`log_run_end`) that adds
the final metrics and artifacts once the run folder is written.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..train.callbacks import Callback
from .mlflow import MLflowLogger, mlflow_requested, mlflow_state, stderr_warning, wait_for_mlflow
from .tensorboard import TB_DIR, TensorBoardLogger


def run_loggers(
    out: Path, config: dict[str, Any], *, mlflow: bool | None = None, enabled: bool = True, warn: Callable[[str], None] = stderr_warning
) -> list[Callback]:
    """The run-record callbacks for a run writing to ``out``: TensorBoard always, MLflow if requested.

    Args:
        out: The run folder.
        config: The resolved config (``RunConfig.to_dict()``), logged as MLflow parameters.
        mlflow: ``--mlflow``; None follows ``MLFLOW_TRACKING_URI``.
        enabled: False on non-zero distributed ranks (nothing is written).
        warn: Where a line about an MLflow server that cannot be reached goes.
    """
    if not enabled:
        return []
    loggers: list[Callback] = [TensorBoardLogger(out / TB_DIR)]
    if mlflow_requested(mlflow):
        loggers.append(MLflowLogger(config, run_name=out.name, folder=out, warn=warn))
    return loggers


def log_run_end(loggers: list[Callback], out: Path, metrics: dict[str, Any], note: Callable[[str], None] | None = None) -> None:
    """Final metrics, confusion matrix, validation-photo grid and artifacts, then close every logger.

    MLflow's upload finishes in the background (``note`` hears where its state
    is); what fails there is the worker's one warning line, never the training's error.
    """
    mlflow = [cb for cb in loggers if isinstance(cb, MLflowLogger)]
    for cb in mlflow:
        cb.send_end(out, metrics)  # the worker uploads while TensorBoard's end is written
    for tb in loggers:
        if isinstance(tb, TensorBoardLogger):
            tb.log_run_end(out, metrics)
    for cb in mlflow:
        cb.release(note)


__all__ = [
    "TB_DIR",
    "MLflowLogger",
    "TensorBoardLogger",
    "log_run_end",
    "mlflow_requested",
    "mlflow_state",
    "run_loggers",
    "stderr_warning",
    "wait_for_mlflow",
]
