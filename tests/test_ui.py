"""The terminal output: epoch rows fit 80 columns, lines never wrap mid-message, progress on by default when watched."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from imagefit import ui


def test_epoch_row_fits_80_columns_with_large_values() -> None:
    row = ui.epoch_row(123, "backbone", {"loss": 12.3456, "accuracy": 1.0, "val_loss": 99.1234, "val_accuracy": 0.5, "lr": 1.5e-7}, 1234.5)
    assert len(row) <= 80 and len(ui.EPOCH_HEADER) <= 80
    assert row.split()[:2] == ["123", "fine-tune"]
    assert ui.epoch_row(1, "head", {"loss": 0.5}, 0.1).split()[4] == "-"  # val_loss not logged


def test_long_messages_are_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    buf = io.StringIO()
    monkeypatch.setattr(ui, "console", Console(file=buf, width=60, soft_wrap=True, highlight=False))
    msg = "calibration: temperature 0.766, validation log loss 0.0398 -> 0.0240, ECE 0.0359 -> 0.0215"
    ui.UI().info(msg)
    ui.UI().info("data: 80 train / 24 validation images -> /a/very/long/path/to/runs/lite0-linear-20261201-224000")
    lines = buf.getvalue().splitlines()
    assert lines[0] == msg and len(lines) == 2


def test_no_progress_bar_off_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    buf = io.StringIO()
    monkeypatch.setattr(ui, "console", Console(file=buf, force_terminal=False, force_jupyter=False))
    with ui.UI().task("features", 10) as advance:
        advance(10)
    assert buf.getvalue() == ""  # a log file gets no empty line where a bar would have been


def test_auto_progress_follows_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert ui.auto_progress() is False
    monkeypatch.setattr("sys.stderr", Tty())
    assert ui.auto_progress() is True


def test_train_progress_default_is_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    import imagefit.api as api

    run = importlib.import_module("imagefit.train.run")  # imagefit.train is the function; the module by name

    seen: list[bool] = []
    monkeypatch.setattr(run, "fit", lambda *a, progress, **k: seen.append(progress))
    monkeypatch.setattr(ui, "auto_progress", lambda: True)
    api.train("x")
    api.train("x", progress=False)
    monkeypatch.setattr(ui, "auto_progress", lambda: False)
    api.train("x")
    assert seen == [True, False, False]
