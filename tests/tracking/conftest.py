"""A tiny real training (imagefit's own Trainer) with the run-record callbacks attached."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from imagefit.train.callbacks import Callback
from imagefit.train.loop import Trainer, make_optimizer, shuffled_batches


def fit_two_phases(callbacks: list[Callback], epochs: int = 3) -> list[dict[str, float]]:
    """Two phases (``head`` then ``backbone``), as a fine-tuning run has, sharing the same loggers."""
    torch.manual_seed(0)
    x, y = torch.randn(64, 8), torch.randint(0, 2, (64,))
    xv, yv = torch.randn(16, 8), torch.randint(0, 2, (16,))
    module = torch.nn.Linear(8, 1)
    history: list[dict[str, float]] = []

    def validate() -> dict[str, float]:
        with torch.no_grad():
            logits = module(xv)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 0], yv.float())
        return {"val_loss": float(loss), "val_accuracy": float(((logits[:, 0] > 0).long() == yv).float().mean())}

    for phase, lr in (("head", 1e-2), ("backbone", 1e-3)):
        trainer = Trainer(module, make_optimizer("adam", [{"params": list(module.parameters())}], lr, 0.0), callbacks, phase=phase)
        history += trainer.fit(shuffled_batches(x, y, 16, 0), validate, epochs)
    return history


@pytest.fixture
def two_phase_fit() -> Callable[[list[Callback]], list[dict[str, float]]]:
    return fit_two_phases


@pytest.fixture
def run_copy(trained_run: Path, tmp_path: Path) -> Path:
    """A writable copy of the session's trained run folder (report, images and model files)."""
    import shutil

    dst = tmp_path / trained_run.name
    shutil.copytree(trained_run, dst, ignore=shutil.ignore_patterns("checkpoint"))
    return dst
