"""The head phase: train the classification head on cached backbone features.

This is the whole ``linear`` strategy and the first phase of ``finetune``.
The features are in memory, so every rank runs the same deterministic steps
and an epoch takes milliseconds.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..config import MONITOR_MODES, RunConfig
from ..errors import DataError
from ..features import Features
from .callbacks import Callback, ReduceLROnPlateau
from .loop import Trainer, make_optimizer, shuffled_batches
from .schedules import LRFindResult, make_schedule, result, sweep
from .session import RunContext, best_value, val_logs

# The head phase's epochs take milliseconds: a row every n-th epoch (and every epoch with a
# message, the first and the last) keeps its table to about a dozen rows for the default 60.
HEAD_ROWS = 12


def continue_phase(ctx: RunContext, trainer: Trainer, phase: str, done: int, steps: int) -> int:
    """Continue a finished phase for ``ctx.more_epochs`` more epochs; returns its new epoch count (recorded in the settings).

    The epoch numbers go on from the last one; the callbacks keep their best
    value (so the best weights overall are restored at the end) but start
    their patience afresh; a per-batch schedule runs a new cycle over the new epochs.
    """
    n = ctx.more_epochs
    ps = ctx.settings.head if phase == "head" else ctx.settings.images
    assert ps is not None
    trainer.continue_training()
    if ctx.settings.schedule != "plateau":
        trainer.set_lr(ps.lr)
        trainer.schedule = make_schedule(ctx.settings.schedule, trainer.optimizer, n, steps)
    ps = dataclasses.replace(ps, epochs=done + n)
    if phase == "head":
        ctx.settings = dataclasses.replace(ctx.settings, head=ps)
    else:
        ctx.settings = dataclasses.replace(ctx.settings, images=ps)
    ctx.ui.info(f"continuing {'the head' if phase == 'head' else 'fine-tuning'} for {n} more epochs ({done + 1} to {done + n})")
    return ps.epochs


def phase_callbacks(ctx: RunContext, best_file: str, baseline: float | None = None) -> list[Callback]:
    """The run's callbacks, without ReduceLROnPlateau when a per-batch schedule sets the learning rate."""
    cbs = ctx.callbacks(best_file, baseline=baseline)
    if ctx.settings.schedule != "plateau":
        cbs = [cb for cb in cbs if not isinstance(cb, ReduceLROnPlateau)]
    return cbs


@dataclass
class FeatureSplits:
    """Cached features and labels: ``x_train`` ``[N, views, F]``, ``x_val`` ``[M, F]`` (the original view)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    val_indices: np.ndarray  # positions of the readable validation photos in the validation set

    @classmethod
    def from_features(cls, train: Features, val: Features, train_labels: list[int], val_labels: list[int]) -> FeatureSplits:
        """Pair the readable photos' features with their labels.

        Raises:
            DataError: when no photo of either set could be read.
        """
        splits = cls(
            torch.from_numpy(train.values),
            torch.tensor(np.asarray(train_labels)[train.indices], dtype=torch.long),
            torch.from_numpy(val.values[:, 0]),
            torch.tensor(np.asarray(val_labels)[val.indices], dtype=torch.long),
            val.indices,
        )
        if len(splits.y_train) == 0 or len(splits.y_val) == 0:
            raise DataError("no readable images in the training or validation set")
        return splits


def head_logits(head: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The head's logits for features ``x``, in eval mode."""
    head.eval()
    with torch.inference_mode():
        return head(x)


def train_head(ctx: RunContext, head: nn.Module, feats: FeatureSplits) -> list[dict[str, float]]:
    """Fit ``head`` on the features with the head phase's settings; returns its history.

    Early stopping restores the best epoch's weights, so ``head`` ends as the best head.
    """
    t, ps = ctx.config.train, ctx.settings.head
    assert ps is not None, "the head phase runs only for the linear and finetune strategies"
    if t.lr == "auto" and t.strategy == "linear" and not (ctx.resume and (ctx.checkpoint_dir / "head.json").is_file()):
        found = find_head(ctx, head, feats)
        ps = dataclasses.replace(ps, lr=found.suggestion)
        ctx.settings = dataclasses.replace(ctx.settings, head=ps)  # the record's settings hold the value used
        ctx.ui.info(f"lr-find: learning rate {ps.lr:.2g} (fastai's valley rule, {len(found.lrs)} steps)")
    optimizer = make_optimizer(t.optimizer, [{"params": list(head.parameters())}], ps.lr, t.weight_decay)
    steps = -(-len(feats.y_train) // ps.batch_size)
    trainer = Trainer(
        head,
        optimizer,
        phase_callbacks(ctx, "best_head.safetensors"),
        seed=t.seed,
        class_weights=ctx.class_weights,
        checkpoint_dir=ctx.checkpoint_dir,
        phase="head",
        save_checkpoints=ctx.dist.is_main,
        report=ctx.ui.info if ctx.ui.enabled else None,
        print_every=max(1, ps.epochs // HEAD_ROWS),
        schedule=make_schedule(ctx.settings.schedule, optimizer, ps.epochs, steps),
    )
    done = trainer.load_checkpoint() if ctx.resume else 0
    epochs = ps.epochs
    if ctx.more_epochs and t.strategy == "linear":
        epochs = continue_phase(ctx, trainer, "head", done, steps)
    batches = shuffled_batches(feats.x_train, feats.y_train, ps.batch_size, t.seed)
    history = trainer.fit(batches, lambda: val_logs(head_logits(head, feats.x_val), feats.y_val), epochs, start_epoch=done)
    ctx.ui.info(f"head: {len(trainer.history)} epochs, best {t.monitor} {best_value(trainer.history, t.monitor):.4f}")
    return history


def find_head(ctx: RunContext, head: nn.Module, feats: FeatureSplits, steps: int = 100) -> LRFindResult:
    """Sweep the head phase's learning rate on cached features (milliseconds per step)."""
    t, ps = ctx.config.train, ctx.settings.head
    assert ps is not None
    optimizer = make_optimizer(t.optimizer, [{"params": list(head.parameters())}], 1e-7, t.weight_decay)
    gen = shuffled_batches(feats.x_train, feats.y_train, ps.batch_size, t.seed)
    batches = itertools.chain.from_iterable(gen(e) for e in itertools.count())
    lrs, losses = sweep(head, optimizer, batches, steps=steps, class_weights=ctx.class_weights)
    return result(lrs, losses)


# -- val_split 0: a final fit on train + validation -----------------------------------------------------
# The split the first fit uses to choose the epoch count when val_split is 0 (the default split).
FINAL_FIT_SPLIT = 0.2


def first_fit_config(config: RunConfig) -> RunConfig:
    """The config the first fit runs with when ``val_split`` is 0: the default split, to choose the epochs on."""
    return dataclasses.replace(config, data=dataclasses.replace(config.data, val_split=FINAL_FIT_SPLIT))


def refit_all(ctx: RunContext, head: nn.Module, feats: FeatureSplits) -> dict[str, Any]:
    """Refit ``head`` from scratch on training + validation features for the first fit's best epoch count.

    Keras/scikit-learn's "final fit": the validation photos chose the epochs,
    then join the training data. Nothing is left to validate on, so the run's
    metrics stay the first fit's validation ones. Returns what the record says about it.
    """
    t, ps = ctx.config.train, ctx.settings.head
    assert ps is not None
    rows = [r for r in ctx.csv.rows if r.get("phase") == "head"]
    epochs = 1 + int(min(range(len(rows)), key=lambda i: _signed(rows[i], t.monitor))) if rows else ps.epochs
    views = feats.x_train.shape[1]
    x = torch.cat([feats.x_train, feats.x_val.unsqueeze(1).expand(-1, views, -1)])
    y = torch.cat([feats.y_train, feats.y_val])
    torch.manual_seed(t.seed)
    for m in head.modules():
        if isinstance(m, nn.Linear):
            m.reset_parameters()
    optimizer = make_optimizer(t.optimizer, [{"params": list(head.parameters())}], ps.lr, t.weight_decay)
    trainer = Trainer(
        head,
        optimizer,
        [ctx.csv],
        seed=t.seed,
        class_weights=ctx.class_weights,
        phase="refit",
        report=ctx.ui.info if ctx.ui.enabled else None,
        print_every=max(1, epochs // HEAD_ROWS),
        schedule=make_schedule(ctx.settings.schedule, optimizer, epochs, -(-len(y) // ps.batch_size)),
    )
    ctx.ui.info(f"final fit: the head again on all {len(y)} photos (train + validation) for {epochs} epochs, the best on validation")
    trainer.fit(shuffled_batches(x, y, ps.batch_size, t.seed), dict, epochs)
    ctx.ui.info("final fit done: the validation metrics reported are the first fit's (the validation photos are now trained on)")
    return {
        "epochs": epochs,
        "photos": len(y),
        "metrics": "validation metrics of the first fit, before the validation photos were trained on",
    }


def _signed(row: dict[str, Any], monitor: str) -> float:
    """A history row's monitor value, as a number to minimize."""
    value = float(row.get(monitor, float("nan")))
    if value != value:
        return float("inf")
    return -value if MONITOR_MODES[monitor] == "max" else value
