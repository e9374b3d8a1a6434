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

import tempfile
import time
from pathlib import Path
from typing import Any

from .head import find_head, train_head
from .images import find_images
from .schedules import RULE, LRFindResult, result, sweep, valley

__all__ = ["RULE", "LRFindResult", "find_head", "find_images", "lr_find", "result", "sweep", "valley"]


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
    from .session import RunContext

    ui = UI(bool(options.pop("progress", True)))
    dev = resolve_device(str(options.pop("device", "auto")))
    config = RunConfig.from_options(**options)
    spec = get_spec(config.model.backbone)
    settings = resolve(config, spec, dev.type)
    out_path = Path(out) if out else Path("runs") / f"lr-find-{time.strftime('%Y%m%d-%H%M%S')}"
    train_set, val_set = prepare_data(data, val, config, warn=ui.warn, info=lambda line: ui.info(plain(line)))
    strategy = config.train.strategy
    with tempfile.TemporaryDirectory() as tmp:  # the head phase's checkpoints of finetune; nothing of them is kept
        ctx = RunContext(config, settings, Path(tmp), ui, train_set, val_set, DistInfo())
        backbone, _ = create_backbone(config.model.backbone, pretrained=config.model.pretrained)
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
