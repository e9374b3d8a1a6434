"""TensorBoard event files: per-epoch scalars per phase, final metrics and images, read back with tensorboard."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from imagefit.tracking import TB_DIR, TensorBoardLogger, log_run_end, run_loggers
from imagefit.tracking._metrics import scalars


def _events(folder: Path) -> EventAccumulator:
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


def test_epochs_of_both_phases_are_logged(tmp_path: Path, two_phase_fit: Callable[..., list[dict[str, float]]]) -> None:
    logger = TensorBoardLogger(tmp_path / TB_DIR)
    history = two_phase_fit([logger], epochs=3)
    logger.close()
    acc = _events(tmp_path / TB_DIR)
    tags = set(acc.Tags()["scalars"])
    for phase in ("head", "backbone"):
        assert {f"{phase}/{k}" for k in ("loss", "accuracy", "val_loss", "val_accuracy", "lr")} <= tags
    head = acc.Scalars("head/val_loss")
    backbone = acc.Scalars("backbone/lr")
    # One step per epoch, continuing across phases.
    assert [e.step for e in head] == [0, 1, 2] and [e.step for e in backbone] == [3, 4, 5]
    assert [round(e.value, 5) for e in head] == [round(h["val_loss"], 5) for h in history[:3]]
    assert backbone[0].value == 1e-3 or abs(backbone[0].value - 1e-3) < 1e-9


def test_run_end_logs_final_metrics_and_images(run_copy: Path) -> None:
    import json

    metrics = json.loads((run_copy / "metrics.json").read_text())
    loggers = run_loggers(run_copy, {"train": {"lr": 0.1}}, mlflow=False)
    assert [type(cb) for cb in loggers] == [TensorBoardLogger]
    log_run_end(loggers, run_copy, metrics)
    acc = _events(run_copy / TB_DIR)
    assert acc.Scalars("final/accuracy")[0].value == metrics["accuracy"]
    assert abs(acc.Scalars("final/calibration/log_loss_after")[0].value - metrics["calibration"]["log_loss_after"]) < 1e-6
    images = set(acc.Tags()["images"])
    assert images == {"final/confusion_matrix", "final/validation_photos"}
    grid = acc.Images("final/validation_photos")[0]
    assert grid.width > 100 and grid.height > 100


def test_scalars_flatten_nested_numbers_only() -> None:
    flat = scalars({"a": 1, "b": {"c": 0.5, "d": [1, 2], "e": "x", "f": float("nan")}, "g": True})
    assert flat == {"a": 1.0, "b/c": 0.5}


def test_mlflow_follows_the_environment(monkeypatch: object) -> None:
    from imagefit.tracking import mlflow_requested

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # type: ignore[attr-defined]
    assert not mlflow_requested(None) and mlflow_requested(True)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")  # type: ignore[attr-defined]
    assert mlflow_requested(None) and not mlflow_requested(False)
