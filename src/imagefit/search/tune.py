"""The search's last candidate: fine-tune the best single backbone, when the budget still allows it.

After the heads on cached features (:mod:`.runner`), the best candidate on one
pretrained backbone at its own input size (composites cannot be fine-tuned) is
fine-tuned as ``--strategy finetune`` does it, starting from that candidate's
linear head: the last blocks in one cycle, new weights kept only if they beat
the head alone on validation (:func:`imagefit.train.images.train_images`).
It runs only when its estimate fits what is left of the budget: on a GPU
usually, on 2 CPU cores rarely (minutes per epoch). The fine-tuned model
replaces the search's choice by the same one-standard-error rule
(:func:`.runner.within_one_se`): the cheaper of the two to predict with, unless
the other's validation log loss is lower by more than one standard error.
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..calibrate import photo_log_losses
from ..config import resolve
from ..data.load import SkipLog
from ..engine import Engine, model_key
from ..features import FeatureCache, extract
from ..models.composite import is_composite
from ..models.heads import ImageClassifier
from ..models.registry import create_backbone, get_spec, state_digest
from .budget import Rates, relative_cost
from .leaderboard import LEADERBOARD_FILE, Entry
from .linear import logits_to_probs, to_head
from .runner import RESERVE, Candidate, SearchResult, within_one_se

if TYPE_CHECKING:
    from ..train.session import OpenedRun, Run, RunContext

# Fine-tuning is a candidate on a GPU; on a CPU it is skipped: there, heads on cached features of more backbones gain
# more per second (clothing-small: 90.3% for 605 s of fine-tuning lite0 vs 94.1% for 140 s of the composite's head).
ON_CPU = False  # tests set it, to run the whole path on a CPU
# Seconds of one fine-tuning epoch per training photo, in lite0 extraction views of this machine: forward,
# backward of the unfrozen blocks, optimizer step and augmented decoding (measured on 2 CPU cores: BENCHMARKS.md).
EPOCH_VIEWS_PER_PHOTO = 6.0


def base_candidate(result: SearchResult) -> Candidate | None:
    """The best scored candidate on one pretrained backbone at its own size, without TTA: where fine-tuning starts."""
    ok = [
        c
        for c in result.candidates
        if c.source.img_size is None and not c.entry.tta and not is_composite(c.source.backbone) and c.entry.train_views == "orig"
    ]
    ok = [c for c in ok if not get_spec(c.source.backbone).weights.startswith("none")]
    return min(ok, key=lambda c: (c.entry.score, c.entry.seconds)) if ok else None


def estimate(rates: Rates, backbone: str, n_train: int, n_val: int, epochs: int) -> float:
    """Seconds to fine-tune for ``epochs`` (training and a validation pass each), then extract every photo once."""
    view = rates.view_seconds * relative_cost(backbone, None)
    return epochs * (n_train * EPOCH_VIEWS_PER_PHOTO + n_val) * view + (n_train + n_val) * view


def maybe_finetune(
    ctx: RunContext, opened: OpenedRun, result: SearchResult, engine: str, dev: torch.device, start: float, left: float
) -> Run | None:
    """Fine-tune the best single backbone if ``left`` seconds allow; save and return the run if it is chosen, else None.

    ``ctx.config`` and ``ctx.settings`` are the fine-tuning's while it runs and stay so only when it is saved.
    """
    base = base_candidate(result)
    if base is None:
        return None
    name = base.source.backbone
    spec = get_spec(name)
    before = (ctx.config, ctx.settings)
    t = dataclasses.replace(ctx.config.train, strategy="finetune", budget=None, preset=None)
    config = dataclasses.replace(ctx.config, model=dataclasses.replace(ctx.config.model, name=name, hidden=0), train=t)
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, img_size=None))
    settings = dataclasses.replace(resolve(config, spec, dev.type), hidden=0, dropout=0.0)
    assert settings.images is not None
    label = f"{name} finetune"
    est = estimate(Rates(engine), name, len(ctx.train_set), len(ctx.val_set), settings.images.epochs)
    board = result.leaderboard
    why = (
        "a GPU-only candidate (on a CPU heads on cached features gain more per second)"
        if dev.type != "cuda" and not ON_CPU
        else "not with --precision int8"
        if config.model.precision == "int8"
        else "over budget by estimate"
        if est > left * (1 - RESERVE)
        else ""
    )
    if why:
        board.add(Entry(label, "skipped", name, estimate_s=est, note=why))
        return None
    ctx.ui.info(f"search: fine-tuning {name} from its best head (about {est:.0f} s)")
    t0 = time.perf_counter()
    from ..train.images import train_images

    ctx.config, ctx.settings = config, settings
    head = to_head(base.fit)
    backbone, _ = create_backbone(name, pretrained=True)
    classifier = ImageClassifier(backbone, head)
    train_images(ctx, classifier, dev, unfreeze_all=False)
    digest = state_digest(backbone)
    eng = Engine(backbone, settings.preprocess, model_key(name, digest), engine, str(dev), precision=config.model.precision)
    val = extract(ctx.val_set.paths, eng, settings.preprocess, SkipLog(), cache=FeatureCache.for_backbone(digest, settings.preprocess))
    from ..train.head import head_logits

    logits = head_logits(head, torch.from_numpy(val.values[:, 0])).float().numpy()
    y = np.asarray(ctx.val_set.labels, np.int64)[val.indices]
    p = logits_to_probs(logits)
    losses = photo_log_losses(p, y)
    ll, acc = float(losses.mean()), float((p.argmax(1) == y).mean())
    board.elapsed_s += time.perf_counter() - t0
    entry = board.add(
        Entry(label, "ok", name, "orig", False, base.entry.c, ll, float("nan"), ll, acc, est, time.perf_counter() - t0, board.elapsed_s)
    )
    chosen = result.best
    if not _finetune_wins(losses, relative_cost(name, None), chosen):
        ctx.ui.info(f"search: {label}: val log loss {ll:.4f}; keeping {chosen.entry.name}")
        ctx.config, ctx.settings = before
        return None
    board.best = entry.name
    ctx.ui.info(f"search: {label}: val log loss {ll:.4f}, accuracy {acc:.4f}; chosen over {chosen.entry.name}")
    return _save(ctx, opened, result, classifier, eng, logits, y, [ctx.val_set.paths[int(i)] for i in val.indices], start)


def _finetune_wins(losses: np.ndarray, cost: float, chosen: Candidate) -> bool:
    """The one-standard-error rule between two: the cheaper to predict with, unless the other is clearly better."""
    theirs = chosen.val_losses
    if theirs is None or theirs.shape != losses.shape:
        return bool(losses.mean() < chosen.entry.val_log_loss)
    if losses.mean() < theirs.mean():  # fine-tuned is better: kept unless the chosen one is cheaper and within one SE
        return not (chosen.predict_cost < cost and within_one_se(theirs, losses))
    return cost < chosen.predict_cost and within_one_se(losses, theirs)


def _save(
    ctx: RunContext,
    opened: OpenedRun,
    result: SearchResult,
    classifier: ImageClassifier,
    eng: Engine,
    logits: np.ndarray,
    y: np.ndarray,
    paths: list,  # type: ignore[type-arg]
    start: float,
) -> Run:
    """Calibrate, fit the unknown-photo detector and save the fine-tuned model as the run (a finetune run, plus the leaderboard)."""
    from ..train import finish
    from ..train.session import Run
    from ..train.unknown import final_features, with_unknown

    spec = get_spec(ctx.config.model.name)
    digest = state_digest(classifier.backbone)
    ctx.features = {"engine": eng.kind, "precision": eng.precision}
    val_out = finish.ValidationLogits(logits, y, paths)
    cal = finish.calibrate(ctx, val_out)
    record = finish.build_record(ctx, opened, spec, digest, classifier.head.out_features, cal, start)
    train, val = final_features(ctx, None, lambda: eng, digest)
    record = with_unknown(ctx, record, train, val)
    record.extra["search"] = result.leaderboard.to_dict()
    if ctx.dist.is_main:
        result.leaderboard.write_csv(ctx.out / LEADERBOARD_FILE)
        finish.save(ctx, classifier, record, cal, val_out)
    return Run(ctx.out, cal.metrics, list(ctx.csv.rows), ctx.config, ctx.skipped, time.time() - start)


__all__ = ["EPOCH_VIEWS_PER_PHOTO", "ON_CPU", "base_candidate", "estimate", "maybe_finetune"]
