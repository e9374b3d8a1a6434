"""Learning-rate schedules stepped per mini-batch: cosine annealing and fastai's one-cycle.

``plateau`` (the default) is not here: it is the :class:`~.callbacks.ReduceLROnPlateau`
callback, which acts between epochs. The two schedules here are torch's own
schedulers, stepped after every optimizer step, so the learning rate changes
smoothly within an epoch (fastai's ``fit_one_cycle`` works this way).
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import invalid

SCHEDULES = ("plateau", "cosine", "onecycle")


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
