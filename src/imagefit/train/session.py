"""Opening a run: its folder, the resumable state, and what the phases share.

A run folder is a run once ``imagefit.json`` is in it, written last when
everything succeeded. Until then ``checkpoint/run_state.json`` (the config and
the data paths) marks it as one ``--resume`` continues.
"""

from __future__ import annotations

import importlib.util
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save as save_tensors

from ..config import MONITOR_MODES, ResolvedSettings, RunConfig
from ..data.discover import ImageSet
from ..data.load import SkipLog
from ..errors import ArtifactError, ConfigError, OutputError
from ..paths import atomic_write_bytes, atomic_write_json
from ..record import META_FILE
from ..tracking import run_loggers, stderr_warning
from ..ui import UI
from .callbacks import Callback, CSVLogger, EarlyStopping, ModelCheckpoint, ReduceLROnPlateau
from .distributed import DistInfo

CHECKPOINT_DIR = "checkpoint"
STATE_FILE = "run_state.json"


@dataclass
class Run:
    """A finished run: where it is, its validation metrics and history."""

    path: Path
    metrics: dict[str, Any]
    history: list[dict[str, float]]
    config: RunConfig
    skipped: SkipLog = field(default_factory=SkipLog)
    seconds: float = 0.0


def default_out(config: RunConfig) -> Path:
    """``runs/<model>-<strategy>-<YYYYmmdd-HHMMSS>``."""
    return Path("runs") / f"{config.model.backbone}-{config.train.strategy}-{time.strftime('%Y%m%d-%H%M%S')}"


@dataclass
class OpenedRun:
    """Where a run writes, and (on ``--resume``) the config and data it was started with."""

    out: Path
    config: RunConfig
    data: str | Path
    val: str | Path | None
    resume: bool

    @property
    def state_file(self) -> Path:
        return self.out / CHECKPOINT_DIR / STATE_FILE


def open_run(
    out: str | Path | None, config: RunConfig, data: str | Path, val: str | Path | None, *, resume: bool, is_main: bool
) -> OpenedRun:
    """Check the output folder; on ``resume`` read back the run's config and data.

    Raises:
        ConfigError: ``resume`` without a resumable run.
        ArtifactError: a damaged state file.
        OutputError: the folder already holds a run (finished or not) and ``resume`` is off.
    """
    out_path = Path(out) if out else default_out(config)
    opened = OpenedRun(out_path, config, data, val, resume)
    state_file = opened.state_file
    if resume:
        if not state_file.is_file():
            raise ConfigError(f"--resume: no resumable run in {out_path} (missing {CHECKPOINT_DIR}/{STATE_FILE})")
        # A damaged state file gives a clear error, not a JSONDecodeError/KeyError traceback.
        try:
            saved = json.loads(state_file.read_text(encoding="utf-8"))
            opened.config = RunConfig.from_dict(saved["config"])
            opened.data, opened.val = saved["data"], saved["val"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ArtifactError(f"--resume: {state_file} is damaged ({type(exc).__name__}: {exc}); start a new run") from None
    elif is_main and ((out_path / META_FILE).exists() or state_file.exists()):
        raise OutputError(f"{out_path} already holds a run; choose another --out, or add --resume to continue it")
    return opened


def write_state(opened: OpenedRun) -> None:
    """``checkpoint/run_state.json``: what ``--resume`` needs to start the run again."""
    val = None if opened.val is None else str(opened.val)
    atomic_write_json(opened.state_file, {"config": opened.config.to_dict(), "data": str(opened.data), "val": val})


def seed_everything(seed: int) -> None:
    """Seed torch and NumPy's global generators (the per-epoch streams are seeded by the trainer)."""
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))


class RunContext:
    """What the phases of one run share: settings, data, output, the history and the skipped files."""

    def __init__(
        self,
        config: RunConfig,
        settings: ResolvedSettings,
        out: Path,
        ui: UI,
        train_set: ImageSet,
        val_set: ImageSet,
        dist: DistInfo,
        resume: bool = False,
    ):
        self.config = config
        self.settings = settings
        self.dist = dist
        self.out = out
        self.ui = ui
        self.train_set = train_set
        self.val_set = val_set
        self.resume = resume
        self.skipped = SkipLog()
        # Epochs to add to a finished run's last phase (``train --resume --out RUN --epochs N``); 0 otherwise.
        self.more_epochs = 0
        self.csv = CSVLogger(out / "history.csv", enabled=dist.is_main)
        self.trackers = run_loggers(
            out,
            config.to_dict(),
            mlflow=mlflow_choice(config.train.mlflow),
            enabled=dist.is_main,
            warn=ui.warn if ui.enabled else stderr_warning,
        )
        # The engine and precision the head's features came from (``RunRecord.features``), set by the run.
        self.features: dict[str, str] | None = None
        t = config.train
        self.class_weights = class_weights(train_set.labels, len(train_set.classes)) if t.class_weights else None

    @property
    def checkpoint_dir(self) -> Path:
        return self.out / CHECKPOINT_DIR

    def callbacks(self, best_file: str, baseline: float | None = None) -> list[Callback]:
        """Plateau, early stopping (restoring the best weights), best checkpoint, history CSV.

        Args:
            best_file: Name of the best weights' file in the checkpoint folder.
            baseline: The monitor's value to beat (the model's score before this phase).
        """
        t = self.config.train
        best_path = self.checkpoint_dir / best_file
        write = self.dist.is_main  # rank 0 only

        def save_best(state: dict[str, torch.Tensor], epoch: int, logs: dict[str, float]) -> None:
            if write:
                atomic_write_bytes(best_path, save_tensors({k: v.detach().cpu().contiguous() for k, v in state.items()}))

        mode = MONITOR_MODES[t.monitor]
        return [
            ReduceLROnPlateau(t.monitor, factor=t.lr_factor, patience=t.lr_patience, min_lr=t.min_lr, mode=mode, baseline=baseline),
            EarlyStopping(t.monitor, patience=t.patience, mode=mode, restore_best=True, baseline=baseline),
            ModelCheckpoint(save_best, t.monitor, mode=mode, baseline=baseline),
            self.csv,
            *self.trackers,
        ]


def mlflow_choice(flag: bool) -> bool | None:
    """What :func:`~imagefit.tracking.run_loggers` gets for ``--mlflow``.

    ``--mlflow`` without the mlflow package is one clear error (raised before any
    folder is made); without ``--mlflow``, None follows ``MLFLOW_TRACKING_URI``
    where mlflow is installed, and a stray variable without it changes nothing.

    Raises:
        ConfigError: ``--mlflow`` and mlflow is not installed.
    """
    installed = importlib.util.find_spec("mlflow") is not None
    if flag and not installed:
        raise ConfigError("--mlflow needs the mlflow package: pip install 'imagefit[mlflow]'")
    return True if flag else (None if installed else False)


def class_weights(labels: list[int], n_classes: int) -> torch.Tensor:
    """Inverse class frequencies, normalized so a balanced set gets weights of 1."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    w = len(labels) / (n_classes * np.maximum(counts, 1))
    return torch.tensor(w, dtype=torch.float32)


def best_value(history: list[dict[str, float]], monitor: str) -> float:
    """The best logged value of ``monitor`` (NaN when never logged)."""
    vals = [h[monitor] for h in history if monitor in h]
    if not vals:
        return float("nan")
    return max(vals) if MONITOR_MODES.get(monitor) == "max" else min(vals)


def val_logs(logits: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """``val_loss`` and ``val_accuracy`` of logits against labels."""
    from ..models.heads import loss_fn, predicted_classes

    loss = float(loss_fn(logits, y))
    return {"val_loss": loss, "val_accuracy": float((predicted_classes(logits) == y).float().mean())}
