"""One training run, end to end: data -> features -> head -> (fine-tune) -> saved model.

Strategies:

* ``linear``: the backbone is frozen; pooled features are computed once per
  photo (cached on disk) and only the head is trained, so epochs take
  milliseconds.
* ``finetune``: the head is first trained as in ``linear``, then the last
  blocks of the backbone are unfrozen and trained on augmented images at a
  lower learning rate (see :mod:`.finetune`).
* ``full``: everything trainable from the start (the from-scratch CNN's way).

The phases live in their own modules: :mod:`.session` (open the run),
:mod:`.head` (the head on cached features), :mod:`.images` (backbone blocks on
images), :mod:`.finish` (calibrate and save). This module runs them in order
and computes the features they share.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..artifacts import save_int8_graph
from ..config import AUTO_MODEL, RunConfig, resolve
from ..data.load import SkipLog
from ..data.prepare import prepare_data
from ..data.transforms import Preprocess
from ..engine import Engine, model_key, resolve_device
from ..engines.quantize import calibration_choice
from ..errors import ConfigError
from ..features import FeatureCache, extract
from ..models.composite import check_strategy
from ..models.heads import Head, ImageClassifier
from ..models.registry import BackboneSpec, create_backbone, get_spec, state_digest
from ..paths import check_writable
from ..record import META_FILE, RunRecord
from ..search.fit import LEADERBOARD_FILE
from ..search.leaderboard import Leaderboard
from ..ui import UI, plain
from . import finish
from .distributed import DistInfo, barrier, local_device, setup, teardown
from .head import FeatureSplits, first_fit_config, head_logits, refit_all, train_head
from .images import train_images
from .session import OpenedRun, Run, RunContext, mlflow_choice, open_run, seed_everything, write_state
from .unknown import final_features, with_unknown

__all__ = ["combination_warnings", "fit"]


def fit(
    data: str | Path,
    val: str | Path | None,
    out: str | Path | None,
    config: RunConfig,
    *,
    resume: bool = False,
    progress: bool = True,
    engine: str = "auto",
    device: str = "auto",
) -> Run:
    """Train a classifier and write its run folder. See :func:`imagefit.train`."""
    start = time.time()
    dev = resolve_device(device)
    info = setup(dev)
    dev = local_device(dev, info)
    try:
        return _fit(data, val, out, config, resume=resume, progress=progress, engine=engine, dev=dev, info=info, start=start)
    finally:
        teardown(info)


def _fit(
    data: str | Path,
    val: str | Path | None,
    out: str | Path | None,
    config: RunConfig,
    *,
    resume: bool,
    progress: bool,
    engine: str,
    dev: torch.device,
    info: DistInfo,
    start: float,
) -> Run:
    ui = UI(progress and info.is_main)
    opened = open_run(out, config, data, val, resume=resume, is_main=info.is_main)
    if resume:
        ui.info(f"resuming {opened.out}")
    # --resume on a finished run with --epochs N: N more epochs of its last phase (Keras's "fit again").
    more = config.train.epochs if resume and config.train.epochs and (opened.out / META_FILE).is_file() else 0
    config = opened.config
    auto = config.model.name == AUTO_MODEL
    if auto:  # the saved config says what the model is: lite0, unless the stronger backbone is kept
        config = dataclasses.replace(config, model=dataclasses.replace(config.model, name=config.model.backbone))
    mlflow_choice(config.train.mlflow)  # --mlflow without the mlflow package fails before any folder is made
    spec = get_spec(config.model.name)  # an unknown model fails before any folder is made
    check_strategy(spec.name, config.train.strategy)
    settings = resolve(config, spec, dev.type)
    for warning in combination_warnings(config, spec):
        ui.warn(warning)
    final_fit = config.data.val_split == 0  # "train on all data": choose the epochs on a split, then refit on everything
    # Missing or unusable data fails here, before any folder is made.
    split_config = first_fit_config(config) if final_fit else config
    train_set, val_set = prepare_data(
        opened.data, opened.val, split_config, out=opened.out, warn=ui.warn, info=lambda line: ui.info(plain(line))
    )
    if info.is_main:
        check_writable(opened.out)
        write_state(opened)
    seed_everything(config.train.seed)
    ui.info(f"data: {len(train_set)} train / {len(val_set)} validation images, classes {train_set.classes} -> {opened.out}")
    ctx = RunContext(config, settings, opened.out, ui, train_set, val_set, info, resume)
    if config.train.budget or config.train.preset:
        from ..search.fit import fit_search  # the search saves its winner as a normal linear run

        return fit_search(ctx, opened, engine, dev, start)
    ctx.more_epochs = more or 0
    backbone, _ = create_backbone(config.model.name, pretrained=config.model.pretrained)
    head = Head(spec.num_features, len(train_set.classes), hidden=settings.hidden, dropout=settings.dropout)
    classifier = ImageClassifier(backbone, head)

    feats = None
    board = None
    if config.train.strategy in ("linear", "finetune"):
        feats = _head_features(ctx, backbone, spec.name, engine, dev)
        train_head(ctx, head, feats)
    if auto and config.train.strategy == "linear" and feats is not None and not (final_fit or resume or info.enabled):
        stronger, board = _try_stronger(ctx, opened, head, feats, engine, dev, start)
        if stronger is not None:
            return stronger
    if config.train.strategy in ("finetune", "full"):
        train_images(ctx, classifier, dev, unfreeze_all=config.train.strategy == "full")

    digest = state_digest(backbone)
    val_out = _final_logits(ctx, classifier, feats, spec.name, digest, engine, dev)
    cal = finish.calibrate(ctx, val_out)
    finish.warn_if_baseline(ctx, cal)
    final = refit_all(ctx, head, feats) if final_fit and feats is not None else None
    record = finish.build_record(ctx, opened, spec, digest, head.out_features, cal, start)
    record = _unknown_and_copies(ctx, record, feats, classifier, spec.name, digest, engine, dev)
    if final is not None:
        record.settings = {**(record.settings or {}), "final_fit": final}
    if board is not None:  # auto tried a stronger backbone and kept lite0: both are on the leaderboard
        record.extra["search"] = board.to_dict()
    if info.is_main:
        if board is not None:
            board.write_csv(opened.out / LEADERBOARD_FILE)
        finish.save(ctx, classifier, record, cal, val_out)
    return Run(opened.out, cal.metrics, list(ctx.csv.rows), config, ctx.skipped, time.time() - start)


def combination_warnings(config: RunConfig, spec: BackboneSpec) -> list[str]:
    """Warnings for option combinations that run but make no sense, said before any work.

    An untrained backbone with ``linear``/``finetune`` is a warning, not an error:
    the test suite trains heads on ``simple_cnn``'s random filters as a fast stand-in.
    """
    t, d = config.train, config.data
    out: list[str] = []
    if d.val_split == 0 and t.strategy != "linear":
        raise ConfigError(
            "val_split 0 (a final fit on train + validation) refits the head only: use it with --strategy linear, "
            "or keep a validation split for finetune/full"
        )
    untrained = spec.weights.startswith("none") or not config.model.pretrained
    if untrained and t.strategy != "full":
        out.append(
            f"--model {spec.name} has no pretrained weights here: --strategy {t.strategy} trains a head on random filters "
            "(near chance accuracy); use --strategy full"
        )
    if t.strategy == "linear":
        knobs = [k for k in d.augment_knobs() if k != "flip"]
        if d.augment == "heavy" or knobs:
            what = f"--augment {d.augment}" if d.augment == "heavy" else "--" + "/--".join(knobs)
            out.append(
                f"{what} with --strategy linear: only horizontal flips are used (features are computed once per photo); "
                "use --strategy finetune for rotation, zoom, shift, shear and brightness"
            )
        if t.head_lr is not None:
            out.append("--head-lr sets finetune's first phase; with --strategy linear the head's learning rate is --lr")
    return out


def _head_features(ctx: RunContext, backbone: nn.Module, name: str, engine: str, dev: torch.device) -> FeatureSplits:
    """Features of every training (with the flip view when augmenting) and validation photo, from the cache when there."""
    pre, info, train_set, val_set = ctx.settings.preprocess, ctx.dist, ctx.train_set, ctx.val_set
    digest = state_digest(backbone)
    eng = _engine(ctx, backbone, pre, model_key(name, digest), engine, dev)
    cache = FeatureCache.for_backbone(digest, pre)
    views = ("orig", "flip") if ctx.config.data.augment != "none" else ("orig",)
    workers = ctx.config.data.workers or None
    if info.enabled:
        # Each rank extracts its share into the shared cache; the full passes below then only read it.
        for paths, v in ((train_set.paths, views), (val_set.paths, ("orig",))):
            extract(paths[info.rank :: info.world_size], eng, pre, SkipLog(), cache=cache, views=v, workers=workers)
        barrier(info)
    with ctx.ui.task("features (train)", len(train_set)) as adv:
        ftr = extract(train_set.paths, eng, pre, ctx.skipped, cache=cache, views=views, progress=adv, workers=workers)
    with ctx.ui.task("features (val)", len(val_set)) as adv:
        fva = extract(val_set.paths, eng, pre, ctx.skipped, cache=cache, progress=adv, workers=workers)
    extracted = ftr.extracted + fva.extracted
    ctx.ui.info(f"features: {extracted} extracted, {len(ftr.indices) + len(fva.indices) - extracted} from cache")
    return FeatureSplits.from_features(ftr, fva, train_set.labels, val_set.labels)


def _try_stronger(
    ctx: RunContext, opened: OpenedRun, head: Head, feats: FeatureSplits, engine: str, dev: torch.device, start: float
) -> tuple[Run | None, Leaderboard | None]:
    """``--model auto``: when the lite0 head leaves room, fit one on lite0+lite1+lite2 (:mod:`imagefit.search.auto`).

    Returns the saved run when the stronger backbone is kept (else None), and the leaderboard when one was tried.
    """
    from ..search.auto import try_stronger
    from ..search.fit import save_result

    views = ("orig", "flip") if ctx.config.data.augment != "none" else ("orig",)
    logits = head_logits(head, feats.x_val).float().numpy()
    keep, result = try_stronger(
        ctx.train_set, ctx.val_set, logits, feats.y_val.numpy(), seed=ctx.config.train.seed,
        views=views, engine=engine, device=dev.type, say=ctx.ui.info, warn=ctx.ui.warn, task=ctx.ui.task,
    )  # fmt: skip
    if result is None:
        return None, None
    if not keep:
        return None, result.leaderboard
    return save_result(ctx, opened, result, engine, dev, start), result.leaderboard


def _unknown_and_copies(
    ctx: RunContext,
    record: RunRecord,
    feats: FeatureSplits | None,
    classifier: ImageClassifier,
    name: str,
    digest: str,
    engine: str,
    dev: torch.device,
) -> RunRecord:
    """Warn about validation photos copied from train, and add the unknown-photo detector to the record."""
    key = model_key(name, digest)
    train, val = final_features(ctx, feats, lambda: _engine(ctx, classifier.backbone, ctx.settings.preprocess, key, engine, dev), digest)
    return with_unknown(ctx, record, train, val)


def _final_logits(
    ctx: RunContext, classifier: ImageClassifier, feats: FeatureSplits | None, name: str, digest: str, engine: str, dev: torch.device
) -> finish.ValidationLogits:
    """The validation logits of the final model (with the restored best weights)."""
    val_set, pre = ctx.val_set, ctx.settings.preprocess
    if feats is not None and ctx.config.train.strategy == "linear":
        # The backbone is untouched: the cached validation features still hold.
        indices = feats.val_indices
        logits, y = head_logits(classifier.head, feats.x_val).float().numpy(), feats.y_val.numpy()
    else:
        eng = _engine(ctx, classifier.backbone, pre, model_key(name, digest), engine, dev)
        val_skipped = SkipLog()
        fva = extract(val_set.paths, eng, pre, val_skipped, cache=FeatureCache.for_backbone(digest, pre))
        # With --strategy full no earlier pass listed the unreadable validation
        # files (validate() keeps no log); add them, without duplicates.
        ctx.skipped.extend(val_skipped)
        indices = fva.indices
        logits = head_logits(classifier.head, torch.from_numpy(fva.values[:, 0])).float().numpy()
        y = np.asarray(val_set.labels)[indices]
    return finish.ValidationLogits(logits, y, [val_set.paths[int(i)] for i in indices])


def _engine(ctx: RunContext, backbone: nn.Module, pre: Preprocess, key: str, engine: str, dev: torch.device) -> Engine:
    """An inference engine in the run's precision; under DDP rank 0 exports the ONNX graph first so ranks never race on it.

    Its engine and precision go into the run record, so prediction computes the features the head was trained on.
    """
    info, precision = ctx.dist, ctx.config.model.precision
    # int8 is calibrated on training photos only (a seeded choice), never on validation.
    calib = calibration_choice(ctx.train_set.paths, seed=ctx.config.train.seed) if precision == "int8" else None
    if not info.enabled or dev.type == "cuda":
        eng = Engine(backbone, pre, key, engine, str(dev), precision=precision, calibration=calib)
    else:
        first = Engine(backbone, pre, key, engine, str(dev), precision=precision, calibration=calib) if info.is_main else None
        barrier(info)
        eng = first or Engine(backbone, pre, key, engine, str(dev), precision=precision, calibration=calib)
    ctx.features = {"engine": eng.kind, "precision": eng.precision}
    if eng.precision.startswith("int8-") and eng.graph is not None:
        # The quantized graph depends on this run's photos: it travels with the run (restored into the cache by load).
        ctx.features.update(save_int8_graph(eng.graph, ctx.out, write=info.is_main))
    return eng
