"""MLflow run records (``--mlflow``, or ``MLFLOW_TRACKING_URI`` set).

Parameters (the resolved config, flattened), per-epoch metrics
(``<phase>_<name>``, one step per epoch across phases), final validation
metrics, and as artifacts the report, its images, ``metrics.json`` and the
model folder (``model/``: ``imagefit.json`` + ``model.safetensors``, which
:func:`imagefit.load` reads after ``mlflow artifacts download``).

mlflow is an optional extra (``pip install 'imagefit[mlflow]'``). The training
process never imports it: :class:`MLflowLogger` starts
:mod:`imagefit.tracking.mlflow_worker` in a low-priority process as the run
opens, and only queues messages for it. That process imports mlflow and talks
to the server through :class:`mlflow.MlflowClient` with an explicit run id
while the training runs. At the end the training waits for it, at most
``IMAGEFIT_MLFLOW_TIMEOUT`` seconds (default :data:`DEFAULT_TIMEOUT`); logging
that failed or did not finish in time is one warning line, never an error of
the training (the run folder holds everything).
"""

from __future__ import annotations

import importlib.util
import math
import os
import sys
import time
import uuid
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ConfigError, invalid
from ..train.callbacks import Callback, TrainerLike
from ._child import Child, Reply
from ._metrics import epoch_scalars, scalars

EXPERIMENT = "imagefit"
WORKER = "imagefit.tracking.mlflow_worker"
# Run-folder files logged as artifacts (the model files go under model/).
REPORT_FILES = ("report.html", "metrics.json", "history.csv", "history.png", "confusion.png", "reliability.png", "predictions.png")
MODEL_FILES = ("imagefit.json", "model.safetensors")
TIMEOUT_ENV = "IMAGEFIT_MLFLOW_TIMEOUT"
DEFAULT_TIMEOUT = 120.0  # seconds: the model upload to a remote server is most of it


def mlflow_requested(flag: bool | None) -> bool:
    """``--mlflow`` if given, else whether ``MLFLOW_TRACKING_URI`` is set."""
    return bool(os.environ.get("MLFLOW_TRACKING_URI")) if flag is None else flag


def end_timeout() -> float:
    """Seconds the end of a training waits for MLflow logging (``IMAGEFIT_MLFLOW_TIMEOUT``).

    Raises:
        ConfigError: the variable is not a positive number.
    """
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise invalid(TIMEOUT_ENV, raw, "a number of seconds > 0")
    return value


def stderr_warning(message: str) -> None:
    """Where warnings go without a UI: one line on stderr."""
    sys.stderr.write(f"warning: {message}\n")


def _run_id_setter(logger: MLflowLogger) -> Callable[[Reply], None]:
    # Through a weak reference: the reader thread must not keep a dropped logger (and its finalizer) alive.
    ref = weakref.ref(logger)

    def on_reply(reply: Reply) -> None:
        target = ref()
        if target is not None and reply.get("run_id"):
            target.run_id = str(reply["run_id"])

    return on_reply


class MLflowLogger(Callback):
    """Logs one imagefit run to MLflow (one instance for every phase of a run), through a worker process.

    Args:
        config: The resolved config, logged as parameters (``train.lr``...).
        run_name: The MLflow run's name (the run folder's name).
        tracking_uri: Default ``MLFLOW_TRACKING_URI``, else MLflow's default (``./mlruns``).
        experiment: Experiment name (``MLFLOW_EXPERIMENT_NAME`` or ``imagefit``).

    Raises:
        ConfigError: mlflow is not installed, or ``IMAGEFIT_MLFLOW_TIMEOUT`` is not a positive number.
    """

    def __init__(self, config: dict[str, Any], run_name: str = "", tracking_uri: str | None = None, experiment: str | None = None):
        if importlib.util.find_spec("mlflow") is None:
            raise ConfigError("--mlflow needs the mlflow package: pip install 'imagefit[mlflow]'")
        self.timeout = end_timeout()
        self.tracking_uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or None
        self.experiment = experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT
        self.run_name = run_name
        self.run_key = uuid.uuid4().hex
        self.run_id: str | None = None
        self.step = 0
        self.worker_cpu_s: float | None = None  # the worker's CPU seconds, once it has finished
        self._out: Path | None = None
        self.child = Child(WORKER, on_reply=_run_id_setter(self))
        # A training that fails and is dropped closes the worker's input: it logs what it got, marks the run KILLED.
        weakref.finalize(self, self.child.close)
        init = {"tracking_uri": self.tracking_uri, "experiment": self.experiment, "run_name": run_name or None}
        self.child.send({"op": "init", "run_key": self.run_key, "config": config, **init})

    def on_train_begin(self, trainer: TrainerLike) -> None:
        self.child.send({"op": "begin"})

    def on_epoch_end(self, trainer: TrainerLike, epoch: int, logs: dict[str, float]) -> None:
        values = {k.replace("/", "_"): v for k, v in epoch_scalars(getattr(trainer, "phase", ""), logs).items()}
        self.child.send({"op": "metrics", "values": values, "time": int(time.time() * 1000), "step": self.step})
        self.step += 1

    def log_run_end(self, out: Path, metrics: dict[str, Any], warn: Callable[[str], None] = stderr_warning) -> None:
        """Final metrics (``final_<name>``), the report files and the model folder; waits for the worker.

        Never raises for MLflow's sake: logging that failed or took longer than
        the timeout is one ``warn`` line.
        """
        self.send_end(out, metrics)
        self.wait(warn)

    def send_end(self, out: Path, metrics: dict[str, Any]) -> None:
        """Hand the worker the final metrics and the files to upload (returns at once)."""
        out = Path(out)
        self._out = out
        files = [[str(out / n), ""] for n in REPORT_FILES if (out / n).is_file()]
        files += [[str(out / n), "model"] for n in MODEL_FILES if (out / n).is_file()]
        values = {"final_" + k.replace("/", "_"): v for k, v in scalars(metrics).items()}
        self.child.send({"op": "end", "values": values, "time": int(time.time() * 1000), "step": self.step, "files": files})

    def wait(self, warn: Callable[[str], None] = stderr_warning) -> None:
        """Wait for the worker (at most the timeout); a failure or a timeout is one ``warn`` line."""
        finished = self.child.finish(self.timeout)
        last = self.child.replies[-1] if self.child.replies else {}
        self.worker_cpu_s = last.get("cpu_s")
        where = f"MLflow run {self.run_id}" if self.run_id else "the MLflow run"
        folder = f"everything is in {self._out}" if self._out else "the run folder has everything"
        if not finished:
            warn(
                f"MLflow logging did not finish within {self.timeout:g} s and was stopped: {where} is incomplete ({folder}; set {TIMEOUT_ENV} to wait longer)"
            )
        elif last.get("error"):
            warn(f"MLflow logging failed ({last['error']}): {where} is incomplete ({folder})")
        elif not last.get("done"):
            reason = self.child.stderr_tail() or f"exit code {self.child.proc.returncode}"
            warn(f"MLflow logging stopped ({reason}): {where} is incomplete ({folder})")

    def state_dict(self) -> dict[str, Any]:
        # A resumed run goes on logging into the same MLflow run (found by its key if its id was not known yet).
        return {"run_id": self.run_id, "run_key": self.run_key, "step": self.step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.run_id = state.get("run_id") or self.run_id
        self.run_key = state.get("run_key") or self.run_key
        self.step = int(state.get("step", 0))
        self.child.send({"op": "resume", "run_id": self.run_id, "run_key": self.run_key})
