"""``imagefit train --budget 5m`` / ``--preset``: run the search, save its winner as a normal run.

The winner is one backbone with a linear head on its frozen features, so the
run folder is the same as a ``linear`` run's (``load``, ``evaluate``,
``predict``, ``serve`` and export read it unchanged), plus ``leaderboard.csv``
and the leaderboard under ``search`` in ``imagefit.json``. A composite winner
(``lite0+lite1+lite2``, concatenated features) is one backbone too: its run
says ``--model lite0+lite1+lite2``.

A winner that predicts with flip averaging (TTA) says so in the record
(``"tta": true``, a top-level key of ``imagefit.json``), so that prediction
averages the photo and its mirror image unless the caller says otherwise; its
temperature is fitted on the validation logits averaged over both views.
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING

import torch

from ..config import resolve
from ..data.load import SkipLog
from ..errors import ConfigError, invalid
from ..models.heads import ImageClassifier
from ..models.registry import get_spec, state_digest
from .budget import parse_budget
from .leaderboard import LEADERBOARD_FILE
from .runner import SearchResult, search
from .sources import FeatureSource

if TYPE_CHECKING:
    from ..train.session import OpenedRun, Run, RunContext

# Seconds a preset spends when no --budget is given.
PRESET_BUDGETS = {"fast": 60.0, "good": 300.0, "best": 900.0}


def budget_seconds(budget: str | None, preset: str | None) -> float:
    """``--budget`` if given, else the preset's budget."""
    if budget is not None:
        return parse_budget(budget)
    if preset not in PRESET_BUDGETS:
        raise invalid("preset", preset, tuple(PRESET_BUDGETS))
    return PRESET_BUDGETS[str(preset)]


def fit_search(ctx: RunContext, opened: OpenedRun, engine: str, dev: torch.device, start: float) -> Run:
    """Search within the run's budget, then calibrate and save the winner into ``ctx.out``.

    Raises:
        ConfigError: under torchrun (the search runs in one process).
    """
    config = ctx.config
    if ctx.dist.enabled:
        raise ConfigError("--budget/--preset runs in one process; start it without torchrun")
    seconds = budget_seconds(config.train.budget, config.train.preset)
    ctx.ui.info(f"search: budget {seconds:.0f} s")
    t0 = time.perf_counter()
    result = search(
        ctx.train_set,
        ctx.val_set,
        seconds,
        config.train.seed,
        engine=engine,
        device=dev.type,
        allow_tta=True,
        progress=lambda line: ctx.ui.info(f"search: {line}"),
        task=ctx.ui.task,
    )
    ctx.ui.info(f"search: best {result.best.entry.name} ({result.leaderboard.elapsed_s:.1f} s of {seconds:.0f} s)")
    from .tune import maybe_finetune

    tuned = maybe_finetune(ctx, opened, result, engine, dev, start, seconds - (time.perf_counter() - t0))
    result.leaderboard.elapsed_s = time.perf_counter() - t0
    return tuned or save_result(ctx, opened, result, engine, dev, start)


def save_result(ctx: RunContext, opened: OpenedRun, result: SearchResult, engine: str, dev: torch.device, start: float) -> Run:
    """Calibrate the chosen candidate on validation and save it into ``ctx.out`` as a linear run with its leaderboard."""
    from ..train import finish
    from ..train.head import head_logits
    from ..train.session import Run
    from ..train.unknown import with_unknown

    config = ctx.config
    key = result.source
    # The saved config says what the model is: the winner's backbone and input size, a plain linear head.
    config = dataclasses.replace(
        config,
        model=dataclasses.replace(config.model, name=key.backbone, hidden=0),
        data=dataclasses.replace(config.data, img_size=key.img_size),
    )
    spec = get_spec(key.backbone)
    ctx.config = config
    ctx.settings = dataclasses.replace(resolve(config, spec, dev.type), hidden=0, dropout=0.0)
    head = result.head()
    # The module the search extracted with (a rebuilt one may differ: random filters); a new one only for results made elsewhere.
    src = result.chosen or FeatureSource(key, engine=engine, device=dev.type)
    backbone = src.module()
    digest = state_digest(backbone)
    skipped = SkipLog()
    val = src.features(ctx.val_set, ("orig", "flip") if result.tta else ("orig",), skipped)
    ctx.skipped.extend(result.skipped)
    if src._engine is not None:
        ctx.features = {"engine": src._engine.kind, "precision": src._engine.precision}
    n, views, width = val.values.shape
    # One row of logits per photo: with TTA the views' mean, the closest single-logit stand-in for the
    # averaged probabilities the model will give (the two views of a photo agree closely).
    flat = head_logits(head, torch.from_numpy(val.values.reshape(n * views, width))).float().numpy()
    logits = flat.reshape(n, views, -1).mean(1)
    val_out = finish.ValidationLogits(logits, val.labels, [ctx.val_set.paths[int(i)] for i in val.indices])
    cal = finish.calibrate(ctx, val_out)
    record = finish.build_record(ctx, opened, spec, digest, head.out_features, cal, start)
    # The unknown-photo detector and the copy warning, on the chosen backbone's original views (from the cache).
    train = src.features(ctx.train_set, ("orig",), SkipLog())
    record = with_unknown(ctx, record, train.values[:, 0], val.values[:, 0])
    record.extra["search"] = result.leaderboard.to_dict()
    # Read back as the default of Model.predict/evaluate (tta=None): the model was chosen predicting this way.
    record.tta = bool(result.tta)
    if ctx.dist.is_main:
        result.leaderboard.write_csv(ctx.out / LEADERBOARD_FILE)
        finish.save(ctx, ImageClassifier(backbone, head), record, cal, val_out)
    return Run(ctx.out, cal.metrics, list(ctx.csv.rows), config, ctx.skipped, time.time() - start)


__all__ = ["LEADERBOARD_FILE", "PRESET_BUDGETS", "budget_seconds", "fit_search", "save_result"]
