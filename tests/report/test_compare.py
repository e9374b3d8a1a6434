"""imagefit compare: the table fits the terminal and shows the settings that differ between runs."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console

from imagefit.report.compare import differing_settings, rich_table, settings


def _row(name: str, model: str, strategy: str, lr: float | None, augment: str, acc: float) -> dict[str, Any]:
    cfg = {"model": {"name": model}, "train": {"strategy": strategy, "lr": lr}, "data": {"augment": augment}}
    return {
        "name": name,
        "model": model,
        "strategy": strategy,
        "accuracy": acc,
        "log_loss": 1 - acc,
        "log_loss_uncalibrated": 1.1 - acc,
        "ece": 0.0312,
        "temperature": 1.234,
        "roc_auc": 0.9876,
        "seconds": 123.4,
        "n_train": 2000,
        "n_val": 1000,
        "settings": settings(cfg),
    }


ROWS = [
    _row("lite0-linear-20261201-101010", "lite0", "linear", None, "none", 0.9312),
    _row("lite2-finetune-20261201-121010", "lite2", "finetune", 5e-4, "none", 0.9612),
]


def _render(width: int) -> str:
    c = Console(width=width, record=True, file=io.StringIO())
    c.print(rich_table(ROWS, width=width))
    return c.export_text()


def test_settings_resolved_and_differing() -> None:
    assert ROWS[0]["settings"]["lr"] == 3e-3  # None in the config: the learning rate training used
    assert ROWS[1]["settings"]["lr"] == 5e-4
    assert differing_settings(ROWS) == ["lr", "epochs", "batch_size"]  # augment is the same in both


def test_table_fits_80_columns() -> None:
    text = _render(80)
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "…" not in text  # no cut cell
    for cell in ("0.9312", "0.0388", "lite2", "finetune", "0.0005", "0.003"):
        assert cell in text
    assert "not shown at this width" in text and "temperature" in text.split("not shown")[1]


def test_wide_terminal_shows_everything() -> None:
    text = _render(250)
    assert "not shown" not in text
    for cell in ("1.234", "123.4", "0.9876", "2000"):
        assert cell in text
