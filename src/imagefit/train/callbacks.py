"""Keras/Lightning-style callbacks sharing one monitor base.

A callback sees the epoch's logs (``loss``, ``accuracy``, ``val_loss``,
``val_accuracy``, ``lr``) and acts by setting flags on the trainer
(``stop_training``) or changing its learning rate; it never runs the loop.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any, Protocol

from ..errors import invalid
from ..paths import atomic_write_text


class TrainerLike(Protocol):
    """What callbacks may touch on the trainer."""

    stop_training: bool

    def get_lr(self) -> float: ...
    def set_lr(self, lr: float) -> None: ...
    def snapshot(self) -> dict[str, Any]: ...
    def restore(self, state: dict[str, Any]) -> None: ...


class Callback:
    """Base class: override the hooks you need."""

    def on_train_begin(self, trainer: TrainerLike) -> None:
        """Called once before the first epoch."""

    def on_epoch_end(self, trainer: TrainerLike, epoch: int, logs: dict[str, float]) -> None:
        """Called after each epoch with its metrics."""

    def on_train_end(self, trainer: TrainerLike) -> None:
        """Called once after the last epoch."""

    def state_dict(self) -> dict[str, Any]:
        """JSON-ready state, saved in resumable checkpoints."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`state_dict`."""


def _log(trainer: TrainerLike, message: str) -> None:
    """Hand ``message`` to the trainer's log (printed under its epoch's row), if it keeps one."""
    log = getattr(trainer, "log", None)
    if log is not None:
        log(message)


def _epochs(n: int) -> str:
    return f"{n} epoch" if n == 1 else f"{n} epochs"


def auto_mode(monitor: str) -> str:
    """Keras's ``mode="auto"``: ``max`` for accuracy, AUC and F1 names, ``min`` otherwise."""
    return "max" if ("acc" in monitor or "auc" in monitor or monitor.endswith("f1")) else "min"


class MonitorCallback(Callback):
    """Tracks the best value of one logged metric.

    Args:
        monitor: Metric name in the logs.
        mode: ``min``, ``max`` or ``auto`` (:func:`auto_mode`); pass it explicitly
            for a metric whose name does not say its direction.
        min_delta: Smallest change that counts as an improvement.
        baseline: Keras's ``baseline`` / ``initial_value_threshold``: the value
            to beat (e.g. the score of the model before this phase). Only an
            epoch better than it counts as an improvement.
    """

    def __init__(self, monitor: str = "val_loss", mode: str = "auto", min_delta: float = 0.0, baseline: float | None = None):
        if mode not in ("auto", "min", "max"):
            raise invalid("mode", mode, ("auto", "min", "max"))
        self.monitor = monitor
        self.mode = auto_mode(monitor) if mode == "auto" else mode
        self.min_delta = abs(min_delta)
        self.baseline = baseline
        self.best = self._start()
        self.best_epoch = -1
        self.wait = 0

    def _start(self) -> float:
        if self.baseline is not None:
            return float(self.baseline)
        return math.inf if self.mode == "min" else -math.inf

    def current(self, logs: dict[str, float]) -> float | None:
        """The monitored value, or None if this epoch did not log it."""
        v = logs.get(self.monitor)
        return None if v is None or math.isnan(v) else float(v)

    def improved(self, value: float) -> bool:
        """Whether ``value`` beats the best so far by more than ``min_delta``."""
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def update(self, epoch: int, logs: dict[str, float]) -> bool | None:
        """Record this epoch; True if it improved, False if not, None if unmonitored."""
        value = self.current(logs)
        if value is None:
            return None
        if self.improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            return True
        self.wait += 1
        return False

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = float(state["best"])
        self.best_epoch = int(state["best_epoch"])
        self.wait = int(state["wait"])


class EarlyStopping(MonitorCallback):
    """Stop when the monitor has not improved for ``patience`` epochs; optionally restore the best weights.

    With a ``baseline`` the weights at the start of training are the best so
    far: if no epoch beats the baseline, those are restored.
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        patience: int = 5,
        mode: str = "auto",
        min_delta: float = 0.0,
        restore_best: bool = True,
        baseline: float | None = None,
    ):
        super().__init__(monitor, mode, min_delta, baseline)
        self.patience = patience
        self.restore_best = restore_best
        self.best_state: dict[str, Any] | None = None
        self.stopped_epoch: int | None = None
        self.last_epoch = -1

    def on_train_begin(self, trainer: TrainerLike) -> None:
        if self.baseline is not None and self.restore_best:
            self.best_state = trainer.snapshot()

    def on_epoch_end(self, trainer: TrainerLike, epoch: int, logs: dict[str, float]) -> None:
        result = self.update(epoch, logs)
        self.last_epoch = epoch
        if result is True and self.restore_best:
            self.best_state = trainer.snapshot()
        elif result is False and self.wait >= self.patience:
            trainer.stop_training = True
            self.stopped_epoch = epoch
            restored = f"restored weights of epoch {self.best_epoch + 1}" if self.restore_best and self.best_epoch >= 0 else "none better"
            _log(trainer, f"early stop at epoch {epoch + 1}: {restored} ({self.monitor} {self.best:.4f})")

    def on_train_end(self, trainer: TrainerLike) -> None:
        if self.restore_best and self.best_state is not None:
            trainer.restore(self.best_state)
            if 0 <= self.best_epoch < self.last_epoch and self.stopped_epoch is None:
                _log(trainer, f"restored weights of epoch {self.best_epoch + 1} (best {self.monitor} {self.best:.4f})")
            elif self.best_epoch < 0:
                _log(trainer, f"no epoch beat the starting {self.monitor} {self.best:.4f}: kept the weights from before this phase")


class ReduceLROnPlateau(MonitorCallback):
    """Multiply the learning rate by ``factor`` after ``patience`` epochs without improvement."""

    def __init__(
        self,
        monitor: str = "val_loss",
        factor: float = 0.3,
        patience: int = 2,
        min_lr: float = 1e-6,
        mode: str = "auto",
        min_delta: float = 1e-4,
        cooldown: int = 0,
        baseline: float | None = None,
    ):
        super().__init__(monitor, mode, min_delta, baseline)
        if not 0 < factor < 1:
            raise invalid("factor", factor, "a number in (0, 1)")
        self.factor = factor
        self.patience = patience
        self.min_lr = min_lr
        self.cooldown = cooldown
        self.cooldown_left = 0
        self.reductions: list[tuple[int, float]] = []

    def on_epoch_end(self, trainer: TrainerLike, epoch: int, logs: dict[str, float]) -> None:
        result = self.update(epoch, logs)
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.wait = 0
        if result is False and self.wait >= self.patience:
            old = trainer.get_lr()
            new = max(old * self.factor, self.min_lr)
            if new < old:
                trainer.set_lr(new)
                self.reductions.append((epoch, new))
                _log(trainer, f"{self.monitor} did not improve for {_epochs(self.wait)}: learning rate {old:.2g} -> {new:.2g}")
            self.wait = 0
            self.cooldown_left = self.cooldown

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "cooldown_left": self.cooldown_left, "reductions": self.reductions}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.cooldown_left = int(state.get("cooldown_left", 0))
        self.reductions = [(int(e), float(lr)) for e, lr in state.get("reductions", [])]


class ModelCheckpoint(MonitorCallback):
    """Keep a snapshot of the best weights in memory and call ``save`` when they improve.

    Args:
        save: Receives the trainer's snapshot whenever the monitor improves
            (or every epoch if ``save_best_only`` is False).
    """

    def __init__(
        self, save: Any, monitor: str = "val_loss", mode: str = "auto", save_best_only: bool = True, baseline: float | None = None
    ):
        super().__init__(monitor, mode, baseline=baseline)
        self.save = save
        self.save_best_only = save_best_only

    def on_epoch_end(self, trainer: TrainerLike, epoch: int, logs: dict[str, float]) -> None:
        result = self.update(epoch, logs)
        if result is True or not self.save_best_only:
            self.save(trainer.snapshot(), epoch, logs)


class CSVLogger(Callback):
    """Write the history (one row per epoch) to a CSV file, atomically after every epoch."""

    def __init__(self, path: str | Path, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled  # False on non-zero ranks: rows are kept, nothing is written
        self.rows: list[dict[str, Any]] = []

    def on_epoch_end(self, trainer: TrainerLike, epoch: int, logs: dict[str, float]) -> None:
        self.rows.append({"phase": getattr(trainer, "phase", ""), "epoch": epoch, **logs})
        keys: list[str] = []
        for row in self.rows:
            keys.extend(k for k in row if k not in keys)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=keys)
        writer.writeheader()
        writer.writerows(self.rows)
        if self.enabled:
            atomic_write_text(self.path, buf.getvalue())

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rows = list(state.get("rows", []))
