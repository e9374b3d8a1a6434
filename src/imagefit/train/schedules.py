"""Learning rates: schedules stepped per mini-batch (cosine, fastai's one-cycle) and the finder's sweep.

``plateau`` (the default) is not here: it is the :class:`~.callbacks.ReduceLROnPlateau`
callback, which acts between epochs. The two schedules here are torch's own
schedulers, stepped after every optimizer step, so the learning rate changes
smoothly within an epoch (fastai's ``fit_one_cycle`` works this way).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import invalid
from ..models.heads import loss_fn

SCHEDULES = ("plateau", "cosine", "onecycle")
RULE = "valley"  # the finder's suggestion rule (see :func:`valley`)


class BatchSchedule:
    """A torch scheduler stepped once per mini-batch, never past its last step."""

    def __init__(self, scheduler: torch.optim.lr_scheduler.LRScheduler, total_steps: int):
        self.scheduler = scheduler
        self.total_steps = total_steps

    def step(self) -> None:
        """Advance one mini-batch (a no-op after the last planned step, as OneCycleLR would raise)."""
        if self.scheduler.last_epoch + 1 < self.total_steps:
            self.scheduler.step()

    def state_dict(self) -> dict[str, Any]:
        """JSON-ready state for resumable checkpoints (torch keeps only numbers and strings here)."""
        return {k: v for k, v in self.scheduler.state_dict().items() if isinstance(v, (int, float, str, bool, list, type(None)))}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`state_dict`."""
        full = self.scheduler.state_dict()
        full.update(state)
        self.scheduler.load_state_dict(full)


def make_schedule(name: str, optimizer: torch.optim.Optimizer, epochs: int, steps_per_epoch: int) -> BatchSchedule | None:
    """The per-batch schedule ``name`` over ``epochs`` x ``steps_per_epoch`` steps; None for ``plateau``.

    ``onecycle`` peaks at each parameter group's current learning rate (the phase's
    lr times the group's ``lr_scale``, so discriminative rates keep their ratio),
    warming up over the first 30% of the steps (torch's and fastai's default).
    ``cosine`` starts there and anneals to 0.
    """
    if name not in SCHEDULES:
        raise invalid("schedule", name, SCHEDULES)
    if name == "plateau":
        return None
    total = max(1, epochs * max(1, steps_per_epoch))
    sched: torch.optim.lr_scheduler.LRScheduler
    if name == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    else:
        max_lr = [g["lr"] for g in optimizer.param_groups]
        sched = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=total)
    return BatchSchedule(sched, total)


# -- the learning-rate finder's sweep (fastai's lr_find; orchestrated by :mod:`.lr_find`) ------------
@dataclass
class LRFindResult:
    """The sweep: learning rates tried, their smoothed losses, the suggestion and the plot (None when not written)."""

    lrs: list[float]
    losses: list[float]
    suggestion: float
    plot_path: Path | None = None
    rule: str = RULE


def sweep(
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    start: float = 1e-7,
    end: float = 10.0,
    steps: int = 100,
    forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
    class_weights: torch.Tensor | None = None,
) -> tuple[list[float], list[float]]:
    """Train ``module`` one batch per learning rate, exponentially from ``start`` to ``end``; restores its weights.

    Returns:
        ``(lrs, smoothed losses)``, cut where the loss diverged (4x its best, or not finite).
    """
    state = copy.deepcopy(module.state_dict())
    opt_state = copy.deepcopy(optimizer.state_dict())
    run = forward or module
    lrs: list[float] = []
    losses: list[float] = []
    avg, best, beta = 0.0, math.inf, 0.98
    module.train()
    try:
        for i, (x, y) in enumerate(_cycle(batches, steps)):
            lr = start * (end / start) ** (i / max(1, steps - 1))
            for g in optimizer.param_groups:
                g["lr"] = lr * g.get("lr_scale", 1.0)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(run(x), y, class_weights)
            if not torch.isfinite(loss):
                break
            loss.backward()
            optimizer.step()
            avg = beta * avg + (1 - beta) * loss.item()
            smooth = avg / (1 - beta ** (i + 1))
            lrs.append(lr)
            losses.append(smooth)
            best = min(best, smooth)
            if smooth > 4 * best:
                break
    finally:
        module.load_state_dict(state)
        optimizer.load_state_dict(opt_state)
    return lrs, losses


def _cycle(batches: Iterable[tuple[torch.Tensor, torch.Tensor]], steps: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``steps`` batches, starting the batch source over as often as needed (a small dataset has few)."""
    n = 0
    while n < steps:
        got = False
        for batch in batches:
            got = True
            yield batch
            n += 1
            if n >= steps:
                return
        if not got:
            return


def valley(lrs: list[float], losses: list[float]) -> float:
    """fastai's valley suggestion: 2/3 of the way down the longest decreasing stretch of the loss.

    The first tenth and the last five points are left out, as fastai does
    (the start is noise, the end divergence).
    """
    if not lrs:
        raise ValueError("empty sweep")
    lo, hi = len(lrs) // 10, max(len(lrs) // 10 + 1, len(lrs) - 5)
    xs, ys = lrs[lo:hi], losses[lo:hi]
    n = len(ys)
    lds = [1] * n
    max_start = max_end = 0
    for i in range(1, n):
        for j in range(i):
            if ys[i] < ys[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end, max_start = i, i - lds[i]
    sections = (max_end - max_start) / 3
    idx = min(n - 1, max(0, max_start + int(sections) + int(sections / 2)))
    return float(xs[idx])


def result(lrs: list[float], losses: list[float], plot_to: Path | None = None) -> LRFindResult:
    """The suggestion for a sweep, with its plot written to ``plot_to`` when given."""
    suggestion = valley(lrs, losses)
    path = None
    if plot_to is not None:
        from ..paths import atomic_write_bytes
        from ..report.plots import lr_find_plot

        path = atomic_write_bytes(plot_to, lr_find_plot(lrs, losses, suggestion, RULE))
    return LRFindResult(lrs, losses, suggestion, path)
