"""One training run, end to end: data -> features -> head -> (fine-tune) -> saved model.

Strategies:

* ``linear``: the backbone is frozen; pooled features are computed once per
  photo (cached on disk) and only the head is trained, so epochs take
  milliseconds.
* ``finetune``: the head is first trained as in ``linear``, then the last
  blocks of the backbone are unfrozen and trained on augmented images at a
  lower learning rate (head at 10x), BatchNorm layers kept in eval mode so
  their ImageNet statistics are not disturbed by small batches.
* ``full``: everything trainable from the start (the from-scratch CNN's way).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save as save_tensors
from torch import nn

from ..artifacts import META_FILE, save_run, versions
from ..calibrate import fit_temperature, scaled_probs
from ..config import RunConfig
from ..data.discover import ImageSet, discover
from ..data.gpu import DeviceJpegLoader
from ..data.load import SkipLog
from ..data.loader import TrainImages, collate_skip, iter_batches, worker_context
from ..data.split import stratified_split
from ..data.transforms import Preprocess
from ..engine import Engine, PixelModel, model_key, resolve_device
from ..errors import ArtifactError, ConfigError, DataError, OutputError
from ..evaluate import calibrated_metrics
from ..features import FeatureCache, extract
from ..models.heads import Head, ImageClassifier
from ..models.registry import BackboneSpec, count_unfrozen, create_backbone, get_spec, state_digest, trainable_units
from ..paths import atomic_write_bytes, atomic_write_json
from ..ui import UI, plain
from .callbacks import Callback, CSVLogger, EarlyStopping, ModelCheckpoint, MonitorCallback, ReduceLROnPlateau
from .distributed import DistInfo, barrier, local_device, per_rank_batch, setup, sum_across, teardown
from .loop import Trainer, epoch_seed, make_optimizer, shuffled_batches

CHECKPOINT_DIR = "checkpoint"
STATE_FILE = "run_state.json"


@dataclass
class Run:
    """A finished run: where it is, its validation metrics and history."""

    path: Path
    metrics: dict[str, Any]
    history: list[dict[str, float]]
    config: RunConfig
    skipped: SkipLog = field(default_factory=SkipLog)
    seconds: float = 0.0

    def load(self):  # type: ignore[no-untyped-def]
        """The trained :class:`~imagefit.model.Model`."""
        from ..model import Model

        return Model.load(self.path)


def check_writable(folder: Path, need_bytes: int = 200 * 2**20) -> None:
    """Fail before any work if ``folder`` cannot be written or its disk is nearly full.

    Raises:
        OutputError: with the reason.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".imagefit-write-test"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise OutputError(f"cannot write to output folder {folder}: {exc.strerror or exc}") from None
    free = shutil.disk_usage(folder).free
    if free < need_bytes:
        raise OutputError(f"only {free / 2**20:.0f} MiB free under {folder}; a run needs about {need_bytes / 2**20:.0f} MiB")


def default_out(config: RunConfig) -> Path:
    """``runs/<model>-<strategy>-<YYYYmmdd-HHMMSS>``."""
    return Path("runs") / f"{config.model.name}-{config.train.strategy}-{time.strftime('%Y%m%d-%H%M%S')}"


def prepare_data(data: str | Path, val: str | Path | None, config: RunConfig) -> tuple[ImageSet, ImageSet]:
    """Find train and validation sets: explicit ``val``, the layout's own, or a stratified split."""
    found = discover(data, labels_from_filename=config.data.labels_from_filename)
    train_set = found.train
    if val is not None:
        vfound = discover(val, labels_from_filename=config.data.labels_from_filename)
        val_set = vfound.val or vfound.train
        val_set = val_set.with_classes(train_set.classes)
    elif found.val is not None:
        val_set = found.val
    else:
        if config.data.val_split <= 0:
            raise ConfigError("a validation set is needed: pass --val DATA or --val-split > 0")
        train_set, val_set = stratified_split(train_set, config.data.val_split, config.train.seed)
    return train_set, val_set


def _preprocess(spec: BackboneSpec, config: RunConfig) -> Preprocess:
    pre = spec.preprocess
    if config.data.img_size:
        pre = Preprocess(int(config.data.img_size), pre.mean, pre.std, pre.interpolation, pre.crop_pct)
    return pre


def _freeze_bn(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def _class_weights(labels: list[int], n_classes: int) -> torch.Tensor:
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    w = len(labels) / (n_classes * np.maximum(counts, 1))
    return torch.tensor(w, dtype=torch.float32)


def _callbacks(config: RunConfig, csv_logger: CSVLogger, best_path: Path, *, write: bool = True) -> list[Callback]:
    t = config.train

    def save_best(state: dict[str, torch.Tensor], epoch: int, logs: dict[str, float]) -> None:
        if write:  # rank 0 only
            atomic_write_bytes(best_path, save_tensors({k: v.detach().cpu().contiguous() for k, v in state.items()}))

    return [
        ReduceLROnPlateau(t.monitor, factor=t.lr_factor, patience=t.lr_patience, min_lr=t.min_lr),
        EarlyStopping(t.monitor, patience=t.patience, restore_best=True),
        ModelCheckpoint(save_best, t.monitor),
        csv_logger,
    ]


class _Phase:
    """Shared pieces of one run, passed between the phases."""

    def __init__(self, config: RunConfig, out: Path, ui: UI, train_set: ImageSet, val_set: ImageSet, dist: DistInfo):
        self.config = config
        self.dist = dist
        self.out = out
        self.ui = ui
        self.train_set = train_set
        self.val_set = val_set
        self.skipped = SkipLog()
        self.history: list[dict[str, float]] = []
        self.csv = CSVLogger(out / "history.csv", enabled=dist.is_main)


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
    out_path = Path(out) if out else default_out(config)
    state_file = out_path / CHECKPOINT_DIR / STATE_FILE
    if resume:
        if not state_file.is_file():
            raise ConfigError(f"--resume: no resumable run in {out_path} (missing {CHECKPOINT_DIR}/{STATE_FILE})")
        # A damaged state file gives a clear error, not a JSONDecodeError/KeyError traceback.
        try:
            saved = json.loads(state_file.read_text(encoding="utf-8"))
            config = RunConfig.from_dict(saved["config"])
            data, val = saved["data"], saved["val"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ArtifactError(f"--resume: {state_file} is damaged ({type(exc).__name__}: {exc}); start a new run") from None
        ui.info(f"resuming {out_path}")
    elif info.is_main and ((out_path / META_FILE).exists() or state_file.exists()):
        raise OutputError(f"{out_path} already holds a run; choose another --out, or add --resume to continue it")
    get_spec(config.model.name)  # an unknown model fails before any folder is made
    train_set, val_set = prepare_data(data, val, config)  # and so does missing or unusable data
    if info.is_main:
        check_writable(out_path)
    torch.manual_seed(config.train.seed)
    np.random.seed(config.train.seed % (2**32))

    if info.is_main:
        atomic_write_json(state_file, {"config": config.to_dict(), "data": str(data), "val": None if val is None else str(val)})
    ui.info(f"data: {len(train_set)} train / {len(val_set)} validation images, classes {train_set.classes} -> {out_path}")
    backbone, spec = create_backbone(config.model.name, pretrained=config.model.pretrained)
    pre = _preprocess(spec, config)
    hidden = config.model.hidden or spec.default_hidden
    dropout = config.model.dropout if config.model.hidden or not spec.default_hidden else spec.default_dropout
    head = Head(spec.num_features, len(train_set.classes), hidden=hidden, dropout=dropout)
    classifier = ImageClassifier(backbone, head)
    ph = _Phase(config, out_path, ui, train_set, val_set, info)
    t = config.train
    weights = _class_weights(train_set.labels, len(train_set.classes)) if t.class_weights else None
    ckpt = out_path / CHECKPOINT_DIR

    if t.strategy in ("linear", "finetune"):
        digest = state_digest(backbone)
        eng = _engine(backbone, pre, model_key(spec.name, digest), engine, dev, info)
        cache = FeatureCache.for_backbone(digest, pre)
        views = ("orig", "flip") if config.data.augment != "none" else ("orig",)
        if info.enabled:
            # Each rank extracts its share into the shared cache; the full passes below then only read it.
            for paths, v in ((train_set.paths, views), (val_set.paths, ("orig",))):
                extract(paths[info.rank :: info.world_size], eng, pre, SkipLog(), cache=cache, views=v, workers=config.data.workers or None)
            barrier(info)
        with ui.task("features (train)", len(train_set)) as adv:
            ftr = extract(
                train_set.paths, eng, pre, ph.skipped, cache=cache, views=views, progress=adv, workers=config.data.workers or None
            )
        with ui.task("features (val)", len(val_set)) as adv:
            fva = extract(val_set.paths, eng, pre, ph.skipped, cache=cache, progress=adv, workers=config.data.workers or None)
        ui.info(
            f"features: {ftr.extracted + fva.extracted} extracted, {len(ftr.indices) + len(fva.indices) - ftr.extracted - fva.extracted} from cache"
        )
        xtr = torch.from_numpy(ftr.values)
        ytr = torch.tensor(np.asarray(train_set.labels)[ftr.indices], dtype=torch.long)
        xva = torch.from_numpy(fva.values[:, 0])
        yva = torch.tensor(np.asarray(val_set.labels)[fva.indices], dtype=torch.long)
        if len(ytr) == 0 or len(yva) == 0:
            raise DataError("no readable images in the training or validation set")
        # finetune's head phase is exactly the linear strategy, so fine-tuning starts from the
        # linear model and (monitors seeded with its score) can only match or beat it.
        epochs = t.resolved_epochs if t.strategy == "linear" else t.head_epochs
        lr = t.resolved_lr if t.strategy == "linear" else 3e-3
        head_bs = t.resolved_batch_size if t.strategy == "linear" else 128

        def validate_head() -> dict[str, float]:
            head.eval()
            with torch.inference_mode():
                logits = head(xva)
            return _val_logs(logits, yva)

        # The head trains on in-memory features: every rank runs the same deterministic steps.
        trainer = Trainer(
            head,
            make_optimizer(t.optimizer, [{"params": list(head.parameters())}], lr, t.weight_decay),
            _callbacks(config, ph.csv, ckpt / "best_head.safetensors", write=info.is_main),
            seed=t.seed,
            class_weights=weights,
            checkpoint_dir=ckpt,
            phase="head",
            save_checkpoints=info.is_main,
        )
        done = trainer.load_checkpoint() if resume else 0
        ph.history = trainer.fit(shuffled_batches(xtr, ytr, head_bs, t.seed), validate_head, epochs, start_epoch=done)
        ui.info(f"head: {len(trainer.history)} epochs, best {t.monitor} {_best(trainer.history, t.monitor):.4f}")
        if t.strategy == "finetune":
            ph.history = _fine_tune(ph, classifier, pre, weights, dev, resume, unfreeze_all=False)
    else:
        _fine_tune(ph, classifier, pre, weights, dev, resume, unfreeze_all=True)

    # Final validation metrics with the restored best weights.
    digest = state_digest(backbone)
    if t.strategy == "linear":  # the backbone is untouched: the cached validation features still hold
        head.eval()
        with torch.inference_mode():
            val_logits = head(xva).float().numpy()
        y_val = yva.numpy()
    else:
        eng = _engine(backbone, pre, model_key(spec.name, digest), engine, dev, info)
        val_skipped = SkipLog()
        fva = extract(val_set.paths, eng, pre, val_skipped, cache=FeatureCache.for_backbone(digest, pre))
        # With --strategy full no earlier pass listed the unreadable validation
        # files (validate() keeps no log); add them, without duplicates.
        ph.skipped.extend(val_skipped)
        head.eval()
        with torch.inference_mode():
            val_logits = head(torch.from_numpy(fva.values[:, 0])).float().numpy()
        y_val = np.asarray(val_set.labels)[fva.indices]
    val_paths = [val_set.paths[int(i)] for i in fva.indices]
    # Temperature scaling on the validation logits: the saved model predicts
    # with T, so accuracy/log_loss below are the calibrated model's values
    # (accuracy is unchanged by T; the log loss is the one users will get).
    # T is fitted on this same set, so its log loss is slightly optimistic;
    # the before/after figures are kept under metrics["calibration"].
    temperature = fit_temperature(val_logits, y_val)
    probs_uncal = scaled_probs(val_logits, 1.0)
    probs = scaled_probs(val_logits, temperature)
    counts = train_set.counts()
    metrics = calibrated_metrics(y_val, probs_uncal, probs, temperature, train_set.classes, counts)
    ui.info(
        f"calibration: temperature {temperature:.3f}, validation log loss {metrics['calibration']['log_loss_before']:.4f} -> "
        f"{metrics['calibration']['log_loss_after']:.4f}, ECE {metrics['calibration']['ece_before']:.4f} -> {metrics['calibration']['ece_after']:.4f}"
    )
    meta = {
        "classes": train_set.classes,
        "backbone": {
            "name": spec.name,
            "architecture": spec.architecture,
            "num_features": spec.num_features,
            "digest": digest,
            "weights": spec.weights,
        },
        "preprocess": pre.to_dict(),
        "head": {"hidden": hidden, "dropout": dropout, "out_features": head.out_features},
        "temperature": float(temperature),
        "config": config.to_dict(),
        "train_counts": counts,
        "data": {"train": str(data), "val": None if val is None else str(val), "n_train": len(train_set), "n_val": len(val_set)},
        "metrics": {"val": metrics},
        "skipped": ph.skipped.as_list(),
        "versions": versions(),
        "seconds": round(time.time() - start, 2),
    }
    if not info.is_main:
        return Run(out_path, metrics, list(ph.csv.rows), config, ph.skipped, time.time() - start)
    save_run(out_path, classifier, meta)
    atomic_write_json(out_path / "metrics.json", metrics)
    if ph.skipped:
        ui.info(f"[yellow]skipped {len(ph.skipped)} unreadable file(s):[/]")
        for p, r in ph.skipped.items:
            ui.info(f"  {plain(p)}: {plain(r)}")  # file names may hold "[/]" or non-UTF-8 bytes
    history = list(ph.csv.rows)
    _write_report(out_path, meta, metrics, history, val_paths, y_val, probs_uncal, probs, ui)
    return Run(out_path, metrics, history, config, ph.skipped, time.time() - start)


def _engine(backbone: nn.Module, pre: Preprocess, key: str, engine: str, dev: torch.device, info: DistInfo) -> Engine:
    """An inference engine; under DDP rank 0 exports the ONNX graph first so ranks never race on it."""
    if not info.enabled or dev.type == "cuda":
        return Engine(backbone, pre, key, engine, str(dev))
    eng = Engine(backbone, pre, key, engine, str(dev)) if info.is_main else None
    barrier(info)
    return eng or Engine(backbone, pre, key, engine, str(dev))


def _write_report(
    out: Path,
    meta: dict[str, Any],
    metrics: dict[str, Any],
    history: list[dict[str, Any]],
    paths: list[Path],
    y: np.ndarray,
    probs_uncal: np.ndarray,
    probs: np.ndarray,
    ui: UI,
) -> None:
    """``report.html`` + PNGs in the run folder.

    The model is already saved: a report that fails (a full disk, a broken
    font cache) is reported as a warning and never loses the trained run.
    """
    from ..report import write_run_report

    try:
        path = write_run_report(out, meta, metrics, history, paths, y, probs_uncal, probs)
    except (OSError, ValueError, RuntimeError) as exc:
        ui.info(f"[yellow]warning: report not written: {exc}[/]")
        return
    ui.info(f"report: {path}")


def _val_logs(logits: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    from ..models.heads import loss_fn, predicted_classes

    loss = float(loss_fn(logits, y))
    return {"val_loss": loss, "val_accuracy": float((predicted_classes(logits) == y).float().mean())}


def _best(history: list[dict[str, float]], monitor: str) -> float:
    vals = [h[monitor] for h in history if monitor in h]
    if not vals:
        return float("nan")
    return max(vals) if "acc" in monitor else min(vals)


def discriminative_groups(units: list[nn.Module], low: float = 0.1) -> list[dict[str, Any]]:
    """Unfreeze ``units`` with learning-rate scales rising geometrically from ``low`` to 1.

    Args:
        units: The blocks to train, input side first.
        low: Scale of the first (most generic) block; the last trains at the full rate.
    """
    groups = []
    for j, u in enumerate(units):
        params = list(u.parameters())
        for p in params:
            p.requires_grad_(True)
        scale = low ** ((len(units) - 1 - j) / (len(units) - 1)) if len(units) > 1 else 1.0
        groups.append({"params": params, "lr_scale": scale})
    return groups


def _fine_tune(
    ph: _Phase,
    classifier: ImageClassifier,
    pre: Preprocess,
    weights: torch.Tensor | None,
    dev: torch.device,
    resume: bool,
    *,
    unfreeze_all: bool,
) -> list[dict[str, float]]:
    """Train backbone blocks (+ head) on images, data-parallel when launched by torchrun."""
    config, t, info = ph.config, ph.config.train, ph.dist
    backbone, head = classifier.backbone, classifier.head
    units = trainable_units(backbone)
    for p in backbone.parameters():
        p.requires_grad_(unfreeze_all)
    # Parameter groups with an lr_scale each. Fine-tuning uses discriminative learning rates
    # (fastai's slice(lr/10, lr)): the deepest unfrozen block trains at lr, earlier ones
    # geometrically slower down to lr/10, as their features are more generic.
    groups: list[dict[str, Any]] = []
    if unfreeze_all:
        n_unfrozen = len(units)
        groups.append({"params": [p for p in backbone.parameters()], "lr_scale": 1.0})
    else:
        n_unfrozen = count_unfrozen(len(units), t.unfreeze)
        groups = discriminative_groups(units[len(units) - n_unfrozen :])
    # GPUs get large batches with the learning rate scaled linearly (Goyal et al.), unless set by hand.
    global_bs = t.batch_size or (256 if dev.type == "cuda" else 32)
    lr = t.lr if t.lr is not None else t.resolved_lr * global_bs / 32
    bs = per_rank_batch(global_bs, info)
    loader_kind = config.data.loader
    if loader_kind == "auto":
        # nvjpeg decodes ~7x faster than Pillow in 16 workers on an H100; on a CPU Pillow wins.
        loader_kind = "device" if dev.type == "cuda" else "pillow"
    ph.ui.info(
        f"{'training' if unfreeze_all else 'fine-tuning'} {n_unfrozen}/{len(units)} backbone blocks on images "
        f"(batch {global_bs}{f' = {info.world_size} x {bs}' if info.enabled else ''}, lr {lr:g}, {loader_kind} decoding on {dev.type})"
    )
    # The head is already trained when fine-tuning: the same low rate keeps it from drifting.
    groups.append({"params": list(head.parameters()), "lr_scale": 1.0})
    optimizer = make_optimizer(t.optimizer, groups, lr, t.weight_decay)
    augment = config.data.augment if config.data.augment != "none" or t.strategy == "full" else "light"
    ds = TrainImages(ph.train_set.paths, ph.train_set.labels, pre.train_transform(augment), pre.resize_size)
    workers = config.data.workers or min(2, os.cpu_count() or 1)
    classifier.to(dev)
    # channels_last is 3x faster than NCHW for these convnets on CPU too.
    classifier.to(memory_format=torch.channels_last)
    forward: nn.Module = classifier
    if info.enabled:
        forward = torch.nn.parallel.DistributedDataParallel(classifier, device_ids=[dev.index] if dev.type == "cuda" else None)
    # One seeded permutation shared by all ranks; rank r takes every world_size-th sample, so the
    # union of the ranks' batches is the batch a single process would draw.
    sampler = torch.utils.data.DistributedSampler(
        ds, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=t.seed, drop_last=False
    )
    device_loader = DeviceJpegLoader(ds.paths, ds.labels, pre, dev, augment, ph.skipped) if loader_kind == "device" else None
    seen: set[int] = set()

    def batches(epoch: int):  # type: ignore[no-untyped-def]
        sampler.set_epoch(epoch)
        g = torch.Generator().manual_seed(epoch_seed(t.seed, epoch) + info.rank)
        with ph.ui.task(f"epoch {epoch + 1}/{t.resolved_epochs}", len(sampler)) as adv:
            if device_loader is not None:
                order = list(sampler)
                seen.update(order)
                for x, y in device_loader.batches(order, bs, g):
                    adv(len(y))
                    yield x, y
                return
            loader = torch.utils.data.DataLoader(
                ds,
                batch_size=bs,
                sampler=sampler,
                generator=g,
                num_workers=workers,
                collate_fn=collate_skip,
                pin_memory=dev.type == "cuda",
                persistent_workers=False,
                multiprocessing_context=worker_context() if workers else None,
            )
            for batch in loader:
                if batch is None:
                    continue
                x, y, idx = batch
                seen.update(idx.tolist())
                adv(len(y))
                yield x.to(dev, non_blocking=True).contiguous(memory_format=torch.channels_last), y.to(dev, non_blocking=True)

    val_paths = ph.val_set.paths[info.rank :: info.world_size]
    val_labels = np.asarray(ph.val_set.labels)[info.rank :: info.world_size]
    # Validation images arrive as uint8 NHWC; the wrapper normalizes on the device.
    pixel_classifier = PixelModel(classifier, pre.mean, pre.std).to(dev)

    def validate() -> dict[str, float]:
        """Loss and accuracy over the whole validation set, each rank scoring its share."""
        classifier.eval()
        logits_all, ys = [], []
        with torch.inference_mode():
            for b in iter_batches(val_paths, pre, 64 if dev.type == "cuda" else 32, SkipLog()):
                x = torch.from_numpy(b.arrays).to(dev, non_blocking=True)
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                    logits_all.append(pixel_classifier(x).float().cpu())
                ys.append(torch.from_numpy(val_labels[b.indices]))
        n, loss_sum, correct = 0.0, 0.0, 0.0
        if logits_all:
            logs = _val_logs(torch.cat(logits_all), torch.cat(ys))
            n = float(sum(len(y) for y in ys))
            loss_sum, correct = logs["val_loss"] * n, logs["val_accuracy"] * n
        loss_sum, correct, n = sum_across([loss_sum, correct, n], info, dev)
        if n == 0:
            raise DataError("no readable validation images")
        return {"val_loss": loss_sum / n, "val_accuracy": correct / n}

    def train_mode(m: nn.Module) -> None:
        m.train()
        if not unfreeze_all:
            _freeze_bn(m.backbone)  # type: ignore[arg-type]

    trainer = Trainer(
        classifier,
        optimizer,
        _callbacks(config, ph.csv, ph.out / CHECKPOINT_DIR / "best_model.safetensors", write=info.is_main),
        seed=t.seed,
        class_weights=weights,
        train_mode=train_mode,
        checkpoint_dir=ph.out / CHECKPOINT_DIR,
        phase="backbone",
        autocast="cuda" if dev.type == "cuda" else None,
        forward=forward,
        reduce=lambda v: sum_across(v, info, dev),
        save_checkpoints=info.is_main,
    )
    done = trainer.load_checkpoint() if resume else 0
    if done == 0 and not unfreeze_all:
        # Start every monitor from the head-only model (Keras' initial_value_threshold): fine-tuning
        # keeps new backbone weights only if they beat it, so it never ends worse than `linear`.
        start_logs = validate()
        for cb in trainer.callbacks:
            if isinstance(cb, MonitorCallback) and cb.monitor in start_logs:
                cb.best = start_logs[cb.monitor]
            if isinstance(cb, EarlyStopping):
                cb.best_state = trainer.snapshot()
        ph.ui.info(f"before fine-tuning: {t.monitor} {start_logs.get(t.monitor, float('nan')):.4f}")
    history = trainer.fit(batches, validate, t.resolved_epochs, start_epoch=done)
    classifier.to("cpu", memory_format=torch.contiguous_format)
    if unfreeze_all and device_loader is None:
        # Files the loader dropped: read them once more here to list the reason.
        # (Also when no epoch ran here, e.g. resuming a run killed after its last
        # checkpoint: then every file is re-checked, or the bad ones go unlisted.)
        from ..data.load import load_image
        from ..errors import BadImageError

        mine = set(range(info.rank, len(ds), info.world_size)) if info.enabled else set(range(len(ds)))
        for i in sorted(mine - seen if seen else set(range(len(ds)))):
            try:
                load_image(ds.paths[i])
            except BadImageError as exc:
                ph.skipped.add(ds.paths[i], str(exc))
    ph.history = history
    return history
