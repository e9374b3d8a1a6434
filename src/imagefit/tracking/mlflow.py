"""MLflow run records (``--mlflow``, or ``MLFLOW_TRACKING_URI`` set).

Parameters (the resolved config, flattened), per-epoch metrics
(``<phase>_<name>``, one step per epoch across phases), final validation
metrics, and as artifacts the report, its images, ``metrics.json`` and the
model folder (``model/``: ``imagefit.json`` + ``model.safetensors``, which
:func:`imagefit.load` reads after ``mlflow artifacts download``).

mlflow is an optional extra (``pip install 'imagefit[mlflow]'``), imported
only when a run asks for it. It talks to the server through
:class:`mlflow.MlflowClient` with an explicit run id, so nothing depends on
MLflow's process-global "active run".
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..train.callbacks import Callback, TrainerLike
from ._metrics import epoch_scalars, scalars

EXPERIMENT = "imagefit"
# Run-folder files logged as artifacts (the model files go under model/).
REPORT_FILES = ("report.html", "metrics.json", "history.csv", "history.png", "confusion.png", "reliability.png", "predictions.png")
MODEL_FILES = ("imagefit.json", "model.safetensors")


def mlflow_requested(flag: bool | None) -> bool:
    """``--mlflow`` if given, else whether ``MLFLOW_TRACKING_URI`` is set."""
    return bool(os.environ.get("MLFLOW_TRACKING_URI")) if flag is None else flag


def _flat_params(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(_flat_params(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = json.dumps(value) if isinstance(value, (list, tuple)) else str(value)
    return out


class MLflowLogger(Callback):
    """Logs one imagefit run to MLflow (one instance for every phase of a run).

    Args:
        config: The resolved config, logged as parameters (``train.lr``...).
        run_name: The MLflow run's name (the run folder's name).
        tracking_uri: Default ``MLFLOW_TRACKING_URI``, else MLflow's default (``./mlruns``).
        experiment: Experiment name (``MLFLOW_EXPERIMENT_NAME`` or ``imagefit``).

    Raises:
        ConfigError: mlflow is not installed.
    """

    def __init__(self, config: dict[str, Any], run_name: str = "", tracking_uri: str | None = None, experiment: str | None = None):
        try:
            from mlflow import MlflowClient
        except ImportError:
            raise ConfigError("--mlflow needs the mlflow package: pip install 'imagefit[mlflow]'") from None
        self.client = MlflowClient(tracking_uri=tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or None)
        self.config = config
        self.run_name = run_name
        self.experiment = experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT
        self.run_id: str | None = None
        self.step = 0

    def start(self) -> str:
        """Create the MLflow run (once) and log the parameters; returns its id."""
        if self.run_id is None:
            exp = self.client.get_experiment_by_name(self.experiment)
            exp_id = exp.experiment_id if exp is not None else self.client.create_experiment(self.experiment)
            run = self.client.create_run(exp_id, run_name=self.run_name or None, tags={"imagefit": "1"})
            self.run_id = run.info.run_id
            from mlflow.entities import Param

            params = [Param(k, v[:6000]) for k, v in _flat_params(self.config).items()]
            for i in range(0, len(params), 100):  # MLflow takes at most 100 parameters per batch
                self.client.log_batch(self.run_id, params=params[i : i + 100])
        return self.run_id

    def on_train_begin(self, trainer: TrainerLike) -> None:
        self.start()

    def on_epoch_end(self, trainer: TrainerLike, epoch: int, logs: dict[str, float]) -> None:
        self._log_metrics({k.replace("/", "_"): v for k, v in epoch_scalars(getattr(trainer, "phase", ""), logs).items()})
        self.step += 1

    def _log_metrics(self, values: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, self.step) for k, v in values.items()]
        for i in range(0, len(metrics), 1000):
            self.client.log_batch(self.start(), metrics=metrics[i : i + 1000])

    def log_run_end(self, out: Path, metrics: dict[str, Any]) -> None:
        """Final metrics (``final_<name>``), the report files and the model folder; ends the MLflow run."""
        run_id = self.start()
        self._log_metrics({"final_" + k.replace("/", "_"): v for k, v in scalars(metrics).items()})
        out = Path(out)
        for name in REPORT_FILES:
            if (out / name).is_file():
                self.client.log_artifact(run_id, str(out / name))
        for name in MODEL_FILES:
            if (out / name).is_file():
                self.client.log_artifact(run_id, str(out / name), artifact_path="model")
        self.client.set_terminated(run_id, "FINISHED")

    def state_dict(self) -> dict[str, Any]:
        # A resumed run goes on logging into the same MLflow run.
        return {"run_id": self.run_id, "step": self.step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.run_id = state.get("run_id") or self.run_id
        self.step = int(state.get("step", 0))
