"""End of training: fit the unknown-photo detector and warn about validation photos copied from train.

Both use the final backbone's features of the original view: for ``linear`` the
ones already in memory; after ``finetune``/``full`` the backbone changed, so the
training photos are extracted once more (the validation ones were, for the logits,
and come from the cache).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from ..data.load import SkipLog
from ..duplicates import NEAR_THRESHOLD, near_pairs
from ..errors import ImagefitError
from ..features import FeatureCache, extract
from ..ood import fit_detector, normalize
from ..record import RunRecord
from .head import FeatureSplits
from .session import RunContext


def final_features(ctx: RunContext, feats: FeatureSplits | None, engine: Callable[[], Any], digest: str) -> tuple[np.ndarray, np.ndarray]:
    """``(train [N, F], val [M, F])`` original-view features of the final backbone."""
    if feats is not None and ctx.config.train.strategy == "linear":
        return feats.x_train[:, 0].float().numpy(), feats.x_val.float().numpy()
    pre, cache, eng = ctx.settings.preprocess, FeatureCache.for_backbone(digest, ctx.settings.preprocess), engine()
    with ctx.ui.task("features (unknown-photo detector)", len(ctx.train_set)) as adv:
        ftr = extract(ctx.train_set.paths, eng, pre, SkipLog(), cache=cache, progress=adv)
    fva = extract(ctx.val_set.paths, eng, pre, SkipLog(), cache=cache)
    return ftr.values[:, 0], fva.values[:, 0]


def fit_unknown(ctx: RunContext, train: np.ndarray, val: np.ndarray, save: bool) -> dict[str, Any] | None:
    """Fit and (with ``save``) write ``ood.safetensors``; the record's ``ood`` section, or None when it cannot be fit."""
    try:
        det = fit_detector(train, val, accept=ctx.config.train.unknown_accept, seed=ctx.config.train.seed)
    except ImagefitError as exc:
        ctx.ui.warn(f"no unknown-photo detector: {exc}")
        return None
    accepted = float(np.mean(~det.unknown(det.val_scores)))
    ctx.ui.info(f"unknown-photo detector: threshold {det.threshold:.4f} accepts {accepted:.1%} of the validation photos")
    return det.save(ctx.out).to_dict() if save else None


def with_unknown(ctx: RunContext, record: RunRecord, train: np.ndarray, val: np.ndarray) -> RunRecord:
    """Warn about validation photos copied from train, and add the unknown-photo detector to ``record``."""
    warn_near_copies(ctx, train, val)
    return dataclasses.replace(record, ood=fit_unknown(ctx, train, val, save=ctx.dist.is_main))


def warn_near_copies(ctx: RunContext, train: np.ndarray, val: np.ndarray, threshold: float = NEAR_THRESHOLD) -> int:
    """Warn when validation photos have a near copy (cosine >= ``threshold``) in train; returns how many do.

    Only the original view is compared here (``imagefit inspect DATA --near``
    also finds mirrored copies, and lists the pairs).
    """
    if len(train) == 0 or len(val) == 0:
        return 0
    unit = normalize(np.concatenate([train, val]))
    n = len(train)
    leaked = {j - n for i, j, _ in near_pairs(unit, threshold) if i < n <= j}
    if leaked:
        ctx.ui.warn(
            f"your validation accuracy is optimistic: {len(leaked)} validation photo(s) have a copy in train "
            f"(exact or near: feature cosine >= {threshold}); `imagefit inspect DATA --near` lists them"
        )
    return len(leaked)
