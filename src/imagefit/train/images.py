"""The image phase: train backbone blocks and head on images (``finetune``'s second phase, ``full``).

Data-parallel when launched by torchrun: one seeded permutation shared by all
ranks, each rank taking every ``world_size``-th photo, so the union of the
ranks' batches is the batch a single process would draw.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from ..config import PhaseSettings
from ..data.gpu import DeviceJpegLoader
from ..data.load import SkipLog
from ..data.loader import TrainImages, collate_skip, iter_batches, worker_context
from ..data.transforms import Preprocess
from ..engine import PixelModel
from ..errors import DataError
from ..models.heads import ImageClassifier
from .distributed import per_rank_batch, sum_across
from .finetune import freeze_bn, parameter_groups
from .head import continue_phase, phase_callbacks
from .loop import Trainer, Validate, epoch_seed, make_optimizer
from .schedules import LRFindResult, make_schedule, result, sweep
from .session import RunContext, val_logs


class ImageBatches:
    """Epoch -> augmented training batches on the device, from Pillow workers or the GPU's JPEG decoder.

    Remembers which photos it served (:attr:`seen`), so the unreadable ones can be listed afterwards.
    """

    def __init__(self, ctx: RunContext, pre: Preprocess, dev: torch.device, augment: str):
        info, t = ctx.dist, ctx.config.train
        ps = ctx.settings.images
        assert ps is not None
        self.ctx, self.dev, self.seed, self.epochs = ctx, dev, t.seed, ps.epochs
        self.batch_size = per_rank_batch(ps.batch_size, info)
        self.dataset = TrainImages(
            ctx.train_set.paths, ctx.train_set.labels, pre.train_transform(augment, **ctx.config.data.augment_knobs()), pre.resize_size
        )
        self.workers = ctx.config.data.workers or min(2, os.cpu_count() or 1)
        self.sampler: torch.utils.data.DistributedSampler[int] = torch.utils.data.DistributedSampler(
            self.dataset, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=t.seed, drop_last=False
        )
        self.device_loader = (
            DeviceJpegLoader(self.dataset.paths, self.dataset.labels, pre, dev, augment, ctx.skipped)
            if ctx.settings.loader == "device"
            else None
        )
        self.seen: set[int] = set()

    def __call__(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.sampler.set_epoch(epoch)
        g = torch.Generator().manual_seed(epoch_seed(self.seed, epoch) + self.ctx.dist.rank)
        with self.ctx.ui.task(f"epoch {epoch + 1}/{self.epochs}", len(self.sampler)) as adv:
            for x, y in self._device(g) if self.device_loader is not None else self._workers(g):
                adv(len(y))
                yield x, y

    def _device(self, g: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        assert self.device_loader is not None
        order = list(self.sampler)
        self.seen.update(order)
        yield from self.device_loader.batches(order, self.batch_size, g)

    def _workers(self, g: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        dev = self.dev
        loader = torch.utils.data.DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            sampler=self.sampler,
            generator=g,
            num_workers=self.workers,
            collate_fn=collate_skip,
            pin_memory=dev.type == "cuda",
            persistent_workers=False,
            multiprocessing_context=worker_context() if self.workers else None,
        )
        for batch in loader:
            if batch is None:
                continue
            x, y, idx = batch
            self.seen.update(idx.tolist())
            yield x.to(dev, non_blocking=True).contiguous(memory_format=torch.channels_last), y.to(dev, non_blocking=True)

    def list_unreadable(self) -> None:
        """Add the photos the worker loader dropped to the run's skipped list, with the reason.

        Every photo is re-checked when no epoch ran here (a resumed run killed after its
        last checkpoint), or the bad ones would go unlisted.
        """
        from ..data.load import load_image
        from ..errors import BadImageError

        info, n = self.ctx.dist, len(self.dataset)
        mine = set(range(info.rank, n, info.world_size)) if info.enabled else set(range(n))
        for i in sorted(mine - self.seen if self.seen else set(range(n))):
            try:
                load_image(self.dataset.paths[i])
            except BadImageError as exc:
                self.ctx.skipped.add(self.dataset.paths[i], str(exc))


def image_validator(ctx: RunContext, classifier: nn.Module, pre: Preprocess, dev: torch.device) -> Validate:
    """Loss and accuracy over the whole validation set, each rank scoring its share."""
    info = ctx.dist
    val_paths = ctx.val_set.paths[info.rank :: info.world_size]
    val_labels = np.asarray(ctx.val_set.labels)[info.rank :: info.world_size]
    # Validation images arrive as uint8 NHWC; the wrapper normalizes on the device.
    pixel_classifier = PixelModel(classifier, pre.mean, pre.std).to(dev)

    def validate() -> dict[str, float]:
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
            logs = val_logs(torch.cat(logits_all), torch.cat(ys))
            n = float(sum(len(y) for y in ys))
            loss_sum, correct = logs["val_loss"] * n, logs["val_accuracy"] * n
        loss_sum, correct, n = sum_across([loss_sum, correct, n], info, dev)
        if n == 0:
            raise DataError("no readable validation images")
        return {"val_loss": loss_sum / n, "val_accuracy": correct / n}

    return validate


def find_images(ctx: RunContext, classifier: ImageClassifier, dev: torch.device, *, unfreeze_all: bool, steps: int = 100) -> LRFindResult:
    """Sweep the image phase's learning rate over ``steps`` mini-batches of augmented photos (BatchNorm frozen as in training)."""
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


def _find_lr(ctx: RunContext, classifier: ImageClassifier, dev: torch.device, unfreeze_all: bool) -> PhaseSettings:
    """``--lr auto``: sweep the image phase's learning rate (fastai's lr_find) and record the value used."""
    import dataclasses

    found = find_images(ctx, classifier, dev, unfreeze_all=unfreeze_all)
    assert ctx.settings.images is not None
    ps = dataclasses.replace(ctx.settings.images, lr=found.suggestion)
    ctx.settings = dataclasses.replace(ctx.settings, images=ps)
    ctx.ui.info(f"lr-find: learning rate {ps.lr:.2g} (fastai's valley rule, {len(found.lrs)} steps)")
    return ps


def train_images(ctx: RunContext, classifier: ImageClassifier, dev: torch.device, *, unfreeze_all: bool) -> list[dict[str, float]]:
    """Train backbone blocks (all of them with ``unfreeze_all``) and the head on images; returns the history.

    Fine-tuning starts every monitor from the head-only model's score (Keras's
    ``baseline``): new backbone weights are kept only if they beat it, so the
    result is never worse than ``linear``.
    """
    config, t, info, pre = ctx.config, ctx.config.train, ctx.dist, ctx.settings.preprocess
    ps = ctx.settings.images
    assert ps is not None, "the image phase runs only for the finetune and full strategies"
    if t.lr == "auto" and not (ctx.resume and (ctx.checkpoint_dir / "backbone.json").is_file()):
        ps = _find_lr(ctx, classifier, dev, unfreeze_all)
    groups, n_unfrozen, n_units = parameter_groups(classifier.backbone, classifier.head, t.unfreeze, unfreeze_all=unfreeze_all)
    per_rank = f" = {info.world_size} x {per_rank_batch(ps.batch_size, info)}" if info.enabled else ""
    ctx.ui.info(
        f"{'training' if unfreeze_all else 'fine-tuning'} {n_unfrozen}/{n_units} backbone blocks on images "
        f"(batch {ps.batch_size}{per_rank}, lr {ps.lr:g}, {ctx.settings.loader} decoding on {dev.type})"
    )
    augment = config.data.augment if config.data.augment != "none" or t.strategy == "full" else "light"
    batches = ImageBatches(ctx, pre, dev, augment)
    classifier.to(dev)
    classifier.to(memory_format=torch.channels_last)  # faster than NCHW for these convnets, on CPU too
    forward: nn.Module = classifier
    if info.enabled:
        forward = torch.nn.parallel.DistributedDataParallel(classifier, device_ids=[dev.index] if dev.type == "cuda" else None)
    validate = image_validator(ctx, classifier, pre, dev)

    def train_mode(m: nn.Module) -> None:
        m.train()
        if not unfreeze_all:
            freeze_bn(m.backbone)  # type: ignore[arg-type]

    def make_trainer(baseline: float | None) -> Trainer:
        optimizer = make_optimizer(t.optimizer, groups, ps.lr, t.weight_decay)
        steps = -(-len(batches.sampler) // batches.batch_size)
        return Trainer(
            classifier,
            optimizer,
            phase_callbacks(ctx, "best_model.safetensors", baseline=baseline),
            seed=t.seed,
            class_weights=ctx.class_weights,
            train_mode=train_mode,
            checkpoint_dir=ctx.checkpoint_dir,
            phase="backbone",
            autocast="cuda" if dev.type == "cuda" else None,
            forward=forward,
            reduce=lambda v: sum_across(v, info, dev),
            save_checkpoints=info.is_main,
            report=ctx.ui.info if ctx.ui.enabled else None,
            schedule=make_schedule(ctx.settings.schedule, optimizer, ps.epochs, steps),
        )

    trainer = make_trainer(None)
    resuming = ctx.resume and trainer.has_checkpoint()
    if not unfreeze_all and not resuming:
        baseline = validate()[t.monitor] if t.monitor.startswith("val_") else None
        ctx.ui.info(f"before fine-tuning: {t.monitor} {float('nan') if baseline is None else baseline:.4f}")
        trainer = make_trainer(baseline)
    done = trainer.load_checkpoint() if resuming else 0
    epochs = continue_phase(ctx, trainer, "images", done, -(-len(batches.sampler) // batches.batch_size)) if ctx.more_epochs else ps.epochs
    history = trainer.fit(batches, validate, epochs, start_epoch=done)
    classifier.to("cpu")
    classifier.to(memory_format=torch.contiguous_format)
    if unfreeze_all and batches.device_loader is None:
        batches.list_unreadable()
    return history
