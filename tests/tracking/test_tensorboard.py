"""TensorBoard event files: per-epoch scalars per phase, final metrics and images, read back with tensorboard."""

from __future__ import annotations

import shutil
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


def test_images_are_the_report_pngs_and_decode(run_copy: Path) -> None:
    """The image summaries hold the report's PNG files byte for byte, readable back through tensorboard."""
    import io
    import json

    from PIL import Image

    shutil.rmtree(run_copy / TB_DIR, ignore_errors=True)  # the training's own record: only this one is read
    metrics = json.loads((run_copy / "metrics.json").read_text())
    log_run_end(run_loggers(run_copy, {}, mlflow=False), run_copy, metrics)
    acc = _events(run_copy / TB_DIR)
    for tag, name in (("final/validation_photos", "predictions.png"), ("final/confusion_matrix", "confusion.png")):
        (event,) = acc.Images(tag)
        data = (run_copy / name).read_bytes()
        assert event.encoded_image_string == data
        with Image.open(io.BytesIO(event.encoded_image_string)) as img:
            img.load()
            assert (event.width, event.height) == img.size


def test_confusion_matrix_is_drawn_when_the_report_has_none(run_copy: Path) -> None:
    import io
    import json

    from PIL import Image

    shutil.rmtree(run_copy / TB_DIR, ignore_errors=True)
    (run_copy / "confusion.png").unlink()
    metrics = json.loads((run_copy / "metrics.json").read_text())
    log_run_end(run_loggers(run_copy, {}, mlflow=False), run_copy, metrics)
    (event,) = _events(run_copy / TB_DIR).Images("final/confusion_matrix")
    with Image.open(io.BytesIO(event.encoded_image_string)) as img:
        img.load()
        assert img.size == (event.width, event.height) and img.width > 100


def test_a_running_training_is_visible_without_closing(tmp_path: Path) -> None:
    """A TensorBoard reading the folder mid-training sees each finished epoch within the writer's flush delay."""
    import time

    from imagefit.tracking.tensorboard import FLUSH_SECS

    class Trainer:
        phase = "head"

    logger = TensorBoardLogger(tmp_path / TB_DIR)
    try:
        for epoch in range(3):
            logger.on_epoch_end(Trainer(), epoch, {"loss": 1.0 / (epoch + 1), "lr": 0.1})  # type: ignore[arg-type]
            deadline = time.monotonic() + FLUSH_SECS + 10
            while True:
                tags = _events(tmp_path / TB_DIR).Tags()["scalars"]
                seen = len(_events(tmp_path / TB_DIR).Scalars("head/loss")) if "head/loss" in tags else 0
                if seen == epoch + 1 or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            assert seen == epoch + 1
    finally:
        logger.close()


def test_png_header_and_non_png_files(tmp_path: Path) -> None:
    import io

    from PIL import Image

    from imagefit.tracking.tensorboard import png_header

    buf = io.BytesIO()
    Image.new("RGBA", (7, 5)).save(buf, format="PNG")
    assert png_header(buf.getvalue()) == (5, 7, 4)
    assert png_header(b"GIF89a" + bytes(40)) is None and png_header(b"") is None
    logger = TensorBoardLogger(tmp_path / TB_DIR)
    assert not logger.add_png("x", b"not a png", 0)
    logger.close()


def test_fast_crc_equals_tensorboards_own() -> None:
    """The record checksums the writer uses are tensorboard's (its reader rejects records whose CRC differs)."""
    import random

    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c as reference

    from imagefit.tracking._crc import crc32c, masked_crc32c

    assert crc32c(b"123456789") == 0xE3069283
    rng = random.Random(0)
    for n in (0, 1, 9, 4095, 4096, 4097, 70_001, 2**20 + 3):
        data = rng.randbytes(n)
        assert masked_crc32c(data) == reference(data), n
