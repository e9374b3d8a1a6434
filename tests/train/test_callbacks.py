"""Callbacks fed fake metric sequences through a fake trainer."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import pytest

from imagefit.errors import ConfigError
from imagefit.train.callbacks import CSVLogger, EarlyStopping, ModelCheckpoint, MonitorCallback, ReduceLROnPlateau


class FakeTrainer:
    """Stands in for Trainer: weights are just the epoch number they were 'trained' to."""

    def __init__(self, lr: float = 0.1):
        self.stop_training = False
        self.lr = lr
        self.weights = {"w": -1}
        self.phase = "head"
        self.restored: list[dict[str, Any]] = []

    def get_lr(self) -> float:
        return self.lr

    def set_lr(self, lr: float) -> None:
        self.lr = lr

    def snapshot(self) -> dict[str, Any]:
        return dict(self.weights)

    def restore(self, state: dict[str, Any]) -> None:
        self.restored.append(state)
        self.weights = dict(state)


def feed(cb, values: list[float], key: str = "val_loss", trainer: FakeTrainer | None = None) -> tuple[FakeTrainer, int]:
    """Run epochs until the trainer is told to stop; returns (trainer, epochs run)."""
    trainer = trainer or FakeTrainer()
    cb.on_train_begin(trainer)
    ran = 0
    for epoch, v in enumerate(values):
        if trainer.stop_training:
            break
        trainer.weights = {"w": epoch}
        cb.on_epoch_end(trainer, epoch, {key: v, "loss": 1.0})
        ran += 1
    cb.on_train_end(trainer)
    return trainer, ran


# -- monitor base -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("monitor", "mode"),
    [
        ("val_loss", "min"),
        ("loss", "min"),
        ("val_accuracy", "max"),
        ("accuracy", "max"),
        ("val_auc", "max"),
        ("macro_f1", "max"),
    ],
)
def test_mode_auto(monitor: str, mode: str) -> None:
    cb = MonitorCallback(monitor)
    assert cb.mode == mode
    assert cb.best == (math.inf if mode == "min" else -math.inf)


def test_bad_mode() -> None:
    with pytest.raises(ConfigError, match=r"received 'up'.*auto, min, max"):
        MonitorCallback("val_loss", mode="up")


def test_min_delta_and_missing_metric() -> None:
    cb = MonitorCallback("val_loss", min_delta=0.1)
    assert cb.update(0, {"val_loss": 1.0}) is True
    assert cb.update(1, {"val_loss": 0.95}) is False  # better, but not by more than min_delta
    assert cb.update(2, {"val_loss": 0.85}) is True
    assert cb.update(3, {"loss": 0.1}) is None  # not logged this epoch
    assert cb.update(4, {"val_loss": float("nan")}) is None
    assert (cb.best, cb.best_epoch, cb.wait) == (0.85, 2, 0)


def test_monitor_state_round_trip() -> None:
    a = MonitorCallback("val_accuracy")
    a.update(0, {"val_accuracy": 0.5})
    a.update(1, {"val_accuracy": 0.4})
    b = MonitorCallback("val_accuracy")
    b.load_state_dict(a.state_dict())
    assert (b.best, b.best_epoch, b.wait) == (0.5, 0, 1)


# -- EarlyStopping -----------------------------------------------------------------------
def test_early_stopping_stops_after_patience_and_restores_best() -> None:
    cb = EarlyStopping("val_loss", patience=3)
    trainer, ran = feed(cb, [1.0, 0.8, 0.5, 0.6, 0.7, 0.55, 0.4, 0.3])
    # best at epoch 2; epochs 3, 4, 5 do not improve -> stop after epoch 5.
    assert ran == 6
    assert trainer.stop_training and cb.stopped_epoch == 5
    assert cb.best == 0.5 and cb.best_epoch == 2
    assert trainer.weights == {"w": 2}  # best weights restored at the end
    assert trainer.restored == [{"w": 2}]


def test_early_stopping_no_stop_when_improving() -> None:
    cb = EarlyStopping("val_loss", patience=2)
    trainer, ran = feed(cb, [1.0, 0.9, 0.8, 0.7])
    assert ran == 4 and not trainer.stop_training and cb.stopped_epoch is None
    assert trainer.weights == {"w": 3}


def test_early_stopping_accuracy_mode_auto() -> None:
    cb = EarlyStopping("val_accuracy", patience=2)
    trainer, ran = feed(cb, [0.5, 0.7, 0.9, 0.9, 0.85, 0.99], key="val_accuracy")
    assert ran == 5 and cb.best == 0.9 and cb.best_epoch == 2
    assert trainer.weights == {"w": 2}


def test_early_stopping_without_restore() -> None:
    cb = EarlyStopping("val_loss", patience=1, restore_best=False)
    trainer, ran = feed(cb, [1.0, 2.0, 0.1])
    assert ran == 2 and trainer.restored == [] and trainer.weights == {"w": 1}


def test_early_stopping_patience_one() -> None:
    cb = EarlyStopping("val_loss", patience=1)
    _, ran = feed(cb, [1.0, 1.0, 0.5])  # equal is not an improvement
    assert ran == 2


# -- ReduceLROnPlateau --------------------------------------------------------------------
def test_reduce_lr_by_factor() -> None:
    cb = ReduceLROnPlateau("val_loss", factor=0.5, patience=2, min_lr=1e-6)
    trainer = FakeTrainer(lr=0.1)
    feed(cb, [1.0, 1.1, 1.2, 1.3, 1.4, 0.5, 0.6, 0.7], trainer=trainer)
    # plateau: epochs 1, 2 -> reduce at 2; wait reset; epochs 3, 4 -> reduce at 4; improve 5; 6, 7 -> reduce at 7.
    assert [e for e, _ in cb.reductions] == [2, 4, 7]
    assert [lr for _, lr in cb.reductions] == pytest.approx([0.05, 0.025, 0.0125])
    assert trainer.lr == pytest.approx(0.0125)


def test_reduce_lr_respects_min_lr() -> None:
    cb = ReduceLROnPlateau("val_loss", factor=0.1, patience=1, min_lr=0.005)
    trainer = FakeTrainer(lr=0.1)
    feed(cb, [1.0] + [2.0] * 6, trainer=trainer)
    assert trainer.lr == pytest.approx(0.005)
    assert [lr for _, lr in cb.reductions] == pytest.approx([0.01, 0.005])  # no "reductions" once at min_lr


def test_reduce_lr_min_delta() -> None:
    cb = ReduceLROnPlateau("val_loss", factor=0.5, patience=1, min_delta=0.1)
    trainer = FakeTrainer(lr=1.0)
    feed(cb, [1.0, 0.95], trainer=trainer)  # a tiny improvement counts as a plateau
    assert trainer.lr == pytest.approx(0.5)


def test_reduce_lr_cooldown() -> None:
    cb = ReduceLROnPlateau("val_loss", factor=0.5, patience=1, cooldown=2)
    trainer = FakeTrainer(lr=1.0)
    feed(cb, [1.0, 2.0, 2.0, 2.0, 2.0], trainer=trainer)
    assert [e for e, _ in cb.reductions] == [1, 4]


def test_reduce_lr_accuracy_and_bad_factor() -> None:
    cb = ReduceLROnPlateau("val_accuracy", factor=0.5, patience=1)
    assert cb.mode == "max"
    trainer = FakeTrainer(lr=1.0)
    feed(cb, [0.5, 0.6, 0.6], key="val_accuracy", trainer=trainer)
    assert trainer.lr == pytest.approx(0.5)
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ConfigError, match="factor"):
            ReduceLROnPlateau(factor=bad)


def test_reduce_lr_state_round_trip() -> None:
    cb = ReduceLROnPlateau("val_loss", factor=0.5, patience=1, cooldown=3)
    feed(cb, [1.0, 2.0])
    other = ReduceLROnPlateau("val_loss", factor=0.5, patience=1, cooldown=3)
    other.load_state_dict(cb.state_dict())
    assert other.reductions == cb.reductions and other.cooldown_left == cb.cooldown_left == 3
    assert other.best == cb.best


# -- ModelCheckpoint ----------------------------------------------------------------------
def test_checkpoint_saves_only_on_improvement() -> None:
    saved: list[tuple[dict[str, Any], int, dict[str, float]]] = []
    cb = ModelCheckpoint(lambda state, epoch, logs: saved.append((state, epoch, logs)), "val_loss")
    feed(cb, [1.0, 0.8, 0.9, 0.7, 0.7, 1.5])
    assert [e for _, e, _ in saved] == [0, 1, 3]
    assert [s for s, _, _ in saved] == [{"w": 0}, {"w": 1}, {"w": 3}]
    assert saved[-1][2]["val_loss"] == 0.7


def test_checkpoint_mode_auto_for_accuracy() -> None:
    saved: list[int] = []
    cb = ModelCheckpoint(lambda s, e, logs: saved.append(e), "val_accuracy")
    assert cb.mode == "max"
    feed(cb, [0.5, 0.4, 0.6, 0.6, 0.9], key="val_accuracy")
    assert saved == [0, 2, 4]


def test_checkpoint_every_epoch() -> None:
    saved: list[int] = []
    cb = ModelCheckpoint(lambda s, e, logs: saved.append(e), "val_loss", save_best_only=False)
    feed(cb, [1.0, 2.0, 3.0])
    assert saved == [0, 1, 2]


# -- CSVLogger -------------------------------------------------------------------------------
def test_csv_logger_writes_rows(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "history.csv"
    log = CSVLogger(path)
    trainer = FakeTrainer()
    log.on_epoch_end(trainer, 0, {"loss": 0.9, "accuracy": 0.5})
    with path.open() as fh:
        assert list(csv.DictReader(fh)) == [{"phase": "head", "epoch": "0", "loss": "0.9", "accuracy": "0.5"}]
    trainer.phase = "backbone"
    log.on_epoch_end(trainer, 1, {"loss": 0.5, "accuracy": 0.75, "val_loss": 0.6, "lr": 0.001})
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2
    assert list(rows[1]) == ["phase", "epoch", "loss", "accuracy", "val_loss", "lr"]  # new columns appended
    assert rows[0]["val_loss"] == "" and rows[1]["val_loss"] == "0.6"
    assert rows[1]["phase"] == "backbone" and float(rows[1]["lr"]) == 0.001
    assert not list(path.parent.glob("*.tmp"))  # atomic writes leave no temp files


def test_csv_logger_state_round_trip(tmp_path: Path) -> None:
    log = CSVLogger(tmp_path / "h.csv")
    log.on_epoch_end(FakeTrainer(), 0, {"loss": 1.0})
    again = CSVLogger(tmp_path / "h.csv")
    again.load_state_dict(log.state_dict())
    again.on_epoch_end(FakeTrainer(), 1, {"loss": 0.5})
    with (tmp_path / "h.csv").open() as fh:
        assert [r["epoch"] for r in csv.DictReader(fh)] == ["0", "1"]


# -- baseline (Keras) ------------------------------------------------------------------
def test_baseline_is_the_value_to_beat() -> None:
    cb = MonitorCallback("val_loss", mode="min", baseline=0.5)
    assert cb.best == 0.5
    assert cb.update(0, {"val_loss": 0.6}) is False and cb.best == 0.5
    assert cb.update(1, {"val_loss": 0.4}) is True and cb.best == 0.4


def test_early_stopping_baseline_restores_the_starting_weights() -> None:
    cb = EarlyStopping("val_loss", patience=2, mode="min", baseline=0.5)
    trainer, ran = feed(cb, [0.9, 0.8, 0.7])
    # No epoch beat the baseline: the weights from before training come back.
    assert ran == 2 and trainer.stop_training and cb.best == 0.5
    assert trainer.weights == {"w": -1}


def test_checkpoint_baseline_saves_only_better() -> None:
    saved: list[int] = []
    cb = ModelCheckpoint(lambda s, e, logs: saved.append(e), "val_accuracy", mode="max", baseline=0.8)
    feed(cb, [0.5, 0.7, 0.9], key="val_accuracy")
    assert saved == [2]
