"""Learning-rate finder, fastai's ``lr_find``: a short exponential sweep, smoothed loss, a suggestion.

The learning rate grows exponentially from ``start`` to ``end`` over at most
``steps`` mini-batches while the model trains; the loss is smoothed with an
exponential moving average (debiased, beta 0.98, as fastai) and the sweep
stops once it exceeds 4x its best. The suggestion is fastai's **valley**
rule (its default since 2.5): the longest stretch where the loss keeps
falling, and the point two thirds of the way down it. The weights are put
back afterwards: the sweep only measures.

For ``linear`` the sweep trains the head on cached features (fast); for
``finetune`` and ``full`` it trains on image mini-batches (after the head
phase, for finetune, as fastai runs it after ``unfreeze``).
"""

from __future__ import annotations

import copy
import itertools
import math
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..models.heads import loss_fn

if TYPE_CHECKING:
    from ..models.heads import ImageClassifier
    from .head import FeatureSplits
    from .session import RunContext

RULE = "valley"


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


def find_head(ctx: RunContext, head: nn.Module, feats: FeatureSplits, steps: int = 100) -> LRFindResult:
    """Sweep the head phase's learning rate on cached features (milliseconds per step)."""
    from .loop import make_optimizer, shuffled_batches

    t, ps = ctx.config.train, ctx.settings.head
    assert ps is not None
    optimizer = make_optimizer(t.optimizer, [{"params": list(head.parameters())}], 1e-7, t.weight_decay)
    gen = shuffled_batches(feats.x_train, feats.y_train, ps.batch_size, t.seed)
    batches = itertools.chain.from_iterable(gen(e) for e in itertools.count())
    lrs, losses = sweep(head, optimizer, batches, steps=steps, class_weights=ctx.class_weights)
    return result(lrs, losses)


def find_images(ctx: RunContext, classifier: ImageClassifier, dev: torch.device, *, unfreeze_all: bool, steps: int = 100) -> LRFindResult:
    """Sweep the image phase's learning rate over ``steps`` mini-batches of augmented photos (BatchNorm frozen as in training)."""
    from .finetune import freeze_bn, parameter_groups
    from .images import ImageBatches
    from .loop import make_optimizer

    t = ctx.config.train
    groups, _, _ = parameter_groups(classifier.backbone, classifier.head, t.unfreeze, unfreeze_all=unfreeze_all)
    optimizer = make_optimizer(t.optimizer, groups, 1e-7, t.weight_decay)
    augment = ctx.config.data.augment if ctx.config.data.augment != "none" or unfreeze_all else "light"
    image_batches = ImageBatches(ctx, ctx.settings.preprocess, dev, augment)
    classifier.to(dev)
    batches = itertools.chain.from_iterable(image_batches(e) for e in itertools.count())

    def forward(x: torch.Tensor) -> torch.Tensor:
        classifier.train()
        if not unfreeze_all:
            freeze_bn(classifier.backbone)
        return classifier(x)

    lrs, losses = sweep(classifier, optimizer, batches, steps=steps, forward=forward, class_weights=ctx.class_weights)
    classifier.to("cpu")
    return result(lrs, losses)


def lr_find(data: str | Path, val: str | Path | None = None, out: str | Path | None = None, **options: Any) -> LRFindResult:
    """Sweep learning rates for the options' strategy on ``data``; plot to ``out`` (a folder) and return the suggestion.

    ``linear`` sweeps the head on cached features; ``finetune`` first trains the
    head (its first phase), then sweeps the unfrozen blocks on images; ``full``
    sweeps everything on images.

    Args:
        data, val: As :func:`imagefit.train`.
        out: Folder for ``lr_find.png`` (default ``runs/lr-find-<time>``).
        **options: As :func:`imagefit.train`, plus ``progress`` (default True) and ``device``.
    """
    from ..config import RunConfig, resolve
    from ..data.prepare import prepare_data
    from ..engine import resolve_device
    from ..models.heads import Head
    from ..models.heads import ImageClassifier as Classifier
    from ..models.registry import create_backbone, get_spec
    from ..ui import UI, plain
    from . import run as run_module
    from .distributed import DistInfo
    from .head import train_head
    from .session import RunContext

    ui = UI(bool(options.pop("progress", True)))
    dev = resolve_device(str(options.pop("device", "auto")))
    config = RunConfig.from_options(**options)
    spec = get_spec(config.model.name)
    settings = resolve(config, spec, dev.type)
    out_path = Path(out) if out else Path("runs") / f"lr-find-{time.strftime('%Y%m%d-%H%M%S')}"
    train_set, val_set = prepare_data(data, val, config, warn=ui.warn, info=lambda line: ui.info(plain(line)))
    strategy = config.train.strategy
    with tempfile.TemporaryDirectory() as tmp:  # the head phase's checkpoints of finetune; nothing of them is kept
        ctx = RunContext(config, settings, Path(tmp), ui, train_set, val_set, DistInfo())
        backbone, _ = create_backbone(config.model.name, pretrained=config.model.pretrained)
        head = Head(spec.num_features, len(train_set.classes), hidden=settings.hidden, dropout=settings.dropout)
        feats = run_module._head_features(ctx, backbone, spec.name, "auto", dev) if strategy != "full" else None
        if strategy == "linear":
            assert feats is not None
            found = find_head(ctx, head, feats)
        else:
            if feats is not None:
                train_head(ctx, head, feats)
            found = find_images(ctx, Classifier(backbone, head), dev, unfreeze_all=strategy == "full")
    found = result(found.lrs, found.losses, out_path / "lr_find.png")
    return found
