"""The training loop: epochs, mini-batches, callbacks, resumable checkpoints.

One :class:`Trainer` serves every strategy: it trains whatever module it is
given (a head on cached features, or a whole classifier on images) from a
function that yields batches for an epoch. Randomness is re-seeded from
``(seed, epoch)`` at the start of each epoch, so a run resumed after epoch k
draws exactly the numbers an uninterrupted run would.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file
from safetensors.torch import save as save_tensors
from torch import nn

from ..errors import ArtifactError, ImagefitError
from ..models.heads import loss_fn, predicted_classes
from ..paths import atomic_write_bytes, atomic_write_json
from .callbacks import Callback
from .schedules import BatchSchedule

Batches = Callable[[int], Iterable[tuple[torch.Tensor, torch.Tensor]]]
Validate = Callable[[], dict[str, float]]


class Interrupted(ImagefitError):
    """Training stopped by Ctrl-C after saving a resumable checkpoint."""

    exit_code = 130


def epoch_seed(seed: int, epoch: int) -> int:
    """Seed used for everything random in one epoch."""
    return (seed * 1_000_003 + epoch * 7919) % (2**31 - 1)


def make_optimizer(name: str, groups: list[dict[str, Any]], lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """Adam, AdamW or SGD (momentum 0.9) over parameter groups carrying an ``lr_scale``."""
    for g in groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)
    return torch.optim.SGD(groups, lr=lr, momentum=0.9, weight_decay=weight_decay)


class Trainer:
    """Fits ``module`` with ``optimizer`` under ``callbacks``.

    Args:
        module: The trainable module (its forward gives logits).
        optimizer: Built with :func:`make_optimizer` (groups keep ``lr_scale``).
        callbacks: Run in order after each epoch.
        seed: Base seed.
        class_weights: Optional per-class loss weights.
        train_mode: Called before each epoch to set train/eval modes
            (e.g. keep frozen BatchNorm layers in eval mode).
        checkpoint_dir: Where resumable checkpoints go (None: no checkpoints).
        phase: Name of the phase, stored in checkpoints.
        autocast: Optional device type for bf16 autocast (``cuda``).
        forward: The module that runs the forward pass (a DDP wrapper of ``module``); default ``module``.
        reduce: Sums ``[loss*n, correct, n]`` across ranks (default: as is).
        save_checkpoints: Write checkpoints (rank 0 only under DDP).
        report: Where the epoch table and the callbacks' messages go (None: nowhere).
        print_every: Print every n-th epoch's row (plus the first, the last and any with a message).
        schedule: A per-batch learning-rate schedule (cosine, one-cycle), stepped after each optimizer step.
    """

    def __init__(
        self,
        module: nn.Module,
        optimizer: torch.optim.Optimizer,
        callbacks: list[Callback],
        *,
        seed: int = 0,
        class_weights: torch.Tensor | None = None,
        train_mode: Callable[[nn.Module], None] | None = None,
        checkpoint_dir: Path | None = None,
        phase: str = "train",
        autocast: str | None = None,
        forward: nn.Module | None = None,
        reduce: Callable[[list[float]], list[float]] | None = None,
        save_checkpoints: bool = True,
        report: Callable[[str], None] | None = None,
        print_every: int = 1,
        schedule: BatchSchedule | None = None,
    ):
        self.module = module
        self.optimizer = optimizer
        self.callbacks = callbacks
        self.seed = seed
        self.class_weights = class_weights
        self.train_mode = train_mode or (lambda m: m.train())
        self.checkpoint_dir = checkpoint_dir
        self.phase = phase
        self.autocast = autocast
        # Under DDP the wrapper runs the forward pass; weights are saved from the plain module.
        self.forward = forward if forward is not None else module
        # Sums [loss*n, correct, n] across ranks, so every rank logs the same epoch metrics.
        self.reduce = reduce or (lambda v: v)
        # Only rank 0 writes checkpoints; the others still read them on --resume.
        self.save_checkpoints = save_checkpoints
        self.stop_training = False
        self.epoch = 0
        self.history: list[dict[str, float]] = []
        self.report = report
        self.print_every = max(1, print_every)
        self.schedule = schedule
        self.events: list[str] = []  # the callbacks' messages of the current epoch
        self._header_shown = False

    def log(self, message: str) -> None:
        """A callback's message, printed on its own line after its epoch's row."""
        self.events.append(message)

    def _print_epoch(self, epoch: int, epochs: int, logs: dict[str, float], seconds: float, first: bool) -> None:
        from ..ui import EPOCH_HEADER, epoch_row

        if self.report is None:
            self.events.clear()
            return
        last = self.stop_training or epoch == epochs - 1
        if first or last or self.events or (epoch + 1) % self.print_every == 0:
            if not self._header_shown:
                self.report(EPOCH_HEADER)
                self._header_shown = True
            self.report(epoch_row(epoch + 1, self.phase, logs, seconds))
        for message in self.events:
            self.report(f"       {message}")
        self.events.clear()

    # -- what callbacks use --------------------------------------------------
    def get_lr(self) -> float:
        """The base learning rate (group lr divided by its scale)."""
        g = self.optimizer.param_groups[0]
        return g["lr"] / g.get("lr_scale", 1.0)

    def set_lr(self, lr: float) -> None:
        """Set the base learning rate, keeping each group's ratio."""
        for g in self.optimizer.param_groups:
            g["lr"] = lr * g.get("lr_scale", 1.0)

    def continue_training(self) -> None:
        """Keras's "do another N epochs": clear the stop flag and every callback's patience count, keep their best."""
        self.stop_training = False
        for cb in self.callbacks:
            if hasattr(cb, "wait"):
                cb.wait = 0
            if hasattr(cb, "stopped_epoch"):
                cb.stopped_epoch = None

    def snapshot(self) -> dict[str, Any]:
        """A copy of the module's weights."""
        return {k: v.detach().clone() for k, v in self.module.state_dict().items()}

    def restore(self, state: dict[str, Any]) -> None:
        """Load weights from :meth:`snapshot`."""
        self.module.load_state_dict(state)

    # -- loop ------------------------------------------------------------------
    def fit(self, batches: Batches, validate: Validate, epochs: int, start_epoch: int = 0) -> list[dict[str, float]]:
        """Train from ``start_epoch`` up to ``epochs``; returns the history.

        Raises:
            Interrupted: on Ctrl-C, after the last finished epoch's checkpoint is on disk.
        """
        if start_epoch == 0:
            for cb in self.callbacks:
                cb.on_train_begin(self)
        try:
            for epoch in range(start_epoch, epochs):
                if self.stop_training:
                    break
                self.epoch = epoch
                began = time.perf_counter()
                logs = self._run_epoch(batches, epoch)
                logs.update(validate())
                logs["lr"] = self.get_lr()
                self.history.append({"epoch": epoch, **logs})
                for cb in self.callbacks:
                    cb.on_epoch_end(self, epoch, logs)
                self._print_epoch(epoch, epochs, logs, time.perf_counter() - began, first=epoch == start_epoch)
                self.save_checkpoint(epoch + 1)
        except KeyboardInterrupt:
            where = f"; resume with --resume (checkpoint in {self.checkpoint_dir})" if self.checkpoint_dir else ""
            raise Interrupted(f"interrupted during epoch {self.epoch + 1}{where}") from None
        for cb in self.callbacks:
            cb.on_train_end(self)
        for message in self.events:
            if self.report is not None:
                self.report(f"       {message}")
        self.events.clear()
        return self.history

    def _run_epoch(self, batches: Batches, epoch: int) -> dict[str, float]:
        torch.manual_seed(epoch_seed(self.seed, epoch))
        self.train_mode(self.module)
        total_loss, correct, seen = 0.0, 0, 0
        weights = self.class_weights
        for x, y in batches(epoch):
            self.optimizer.zero_grad(set_to_none=True)
            if self.autocast:
                with torch.autocast(self.autocast, dtype=torch.bfloat16):
                    logits = self.forward(x)
            else:
                logits = self.forward(x)
            loss = loss_fn(logits, y, weights.to(logits.device) if weights is not None else None)
            if not torch.isfinite(loss):
                raise ImagefitError(f"training diverged (loss={loss.item()}) at epoch {epoch + 1}; try a lower --lr")
            loss.backward()
            self.optimizer.step()
            if self.schedule is not None:
                self.schedule.step()
            n = len(y)
            total_loss += loss.item() * n
            correct += int((predicted_classes(logits) == y).sum())
            seen += n
        total_loss, correct_f, seen_f = self.reduce([total_loss, float(correct), float(seen)])
        if seen_f == 0:
            raise ImagefitError("no readable training images in this epoch")
        return {"loss": total_loss / seen_f, "accuracy": correct_f / seen_f}

    # -- checkpoints -------------------------------------------------------------
    def save_checkpoint(self, epochs_done: int) -> None:
        """Write ``last.safetensors`` + ``last.json`` atomically (weights, optimizer, callbacks)."""
        if self.checkpoint_dir is None or not self.save_checkpoints:
            return
        tensors: dict[str, torch.Tensor] = {}
        for k, v in self.module.state_dict().items():
            tensors[f"model.{k}"] = v.detach().cpu().contiguous()
        opt = self.optimizer.state_dict()
        opt_meta: dict[str, Any] = {"param_groups": opt["param_groups"], "state": {}}
        for pid, st in opt["state"].items():
            opt_meta["state"][str(pid)] = {}
            for name, val in st.items():
                if torch.is_tensor(val):
                    tensors[f"optim.{pid}.{name}"] = val.detach().cpu().contiguous()
                    opt_meta["state"][str(pid)][name] = "tensor"
                else:
                    opt_meta["state"][str(pid)][name] = val
        cb_states = []
        for i, cb in enumerate(self.callbacks):
            st = cb.state_dict()
            best = getattr(cb, "best_state", None)
            if best is not None:
                for k, v in best.items():
                    tensors[f"cb{i}.best.{k}"] = v.detach().cpu().contiguous()
                st = {**st, "has_best_state": True}
            cb_states.append(_finite(st))
        meta = {
            "phase": self.phase,
            "epochs_done": epochs_done,
            "stop_training": self.stop_training,
            "optimizer": opt_meta,
            "callbacks": cb_states,
            "history": self.history,
            "schedule": self.schedule.state_dict() if self.schedule is not None else None,
        }
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        # Weights first, metadata last: metadata naming an epoch means its weights are on disk.
        # Serialized in memory and written through atomic_write_bytes: a fixed-name
        # ".part" file written in place was left behind by a kill mid-write.
        atomic_write_bytes(self.checkpoint_dir / f"{self.phase}.safetensors", save_tensors(tensors))
        atomic_write_json(self.checkpoint_dir / f"{self.phase}.json", meta)

    def has_checkpoint(self) -> bool:
        """Whether this phase has a checkpoint to resume from."""
        if self.checkpoint_dir is None:
            return False
        return (self.checkpoint_dir / f"{self.phase}.json").is_file() and (self.checkpoint_dir / f"{self.phase}.safetensors").is_file()

    def load_checkpoint(self) -> int:
        """Restore from this phase's checkpoint; returns the number of epochs done (0 if none)."""
        if self.checkpoint_dir is None:
            return 0
        if not self.has_checkpoint():
            return 0
        meta_path = self.checkpoint_dir / f"{self.phase}.json"
        weights_path = self.checkpoint_dir / f"{self.phase}.safetensors"
        try:
            meta = json.loads(meta_path.read_text())
            tensors = load_file(str(weights_path))
        except Exception as exc:
            raise ArtifactError(f"checkpoint in {self.checkpoint_dir} is unreadable ({exc}); delete it to start over") from None
        model_state = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
        try:
            self.module.load_state_dict(model_state)
        except RuntimeError as exc:
            raise ArtifactError(f"checkpoint in {self.checkpoint_dir} does not fit this model: {str(exc).splitlines()[0]}") from None
        # A damaged or hand-edited checkpoint JSON must give a clear error, not a KeyError.
        try:
            opt_meta = meta["optimizer"]
            state: dict[int, dict[str, Any]] = {}
            for pid, entries in opt_meta["state"].items():
                state[int(pid)] = {name: (tensors[f"optim.{pid}.{name}"] if val == "tensor" else val) for name, val in entries.items()}
            self.optimizer.load_state_dict({"state": state, "param_groups": opt_meta["param_groups"]})
            for i, (cb, st) in enumerate(zip(self.callbacks, meta["callbacks"])):
                cb.load_state_dict(_unfinite(st))
                if st.get("has_best_state"):
                    prefix = f"cb{i}.best."
                    cb.best_state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}  # type: ignore[attr-defined]
            if self.schedule is not None and meta.get("schedule"):
                self.schedule.load_state_dict(meta["schedule"])
            self.history = list(meta.get("history", []))
            self.stop_training = bool(meta.get("stop_training", False))
            return int(meta["epochs_done"])
        except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as exc:
            raise ArtifactError(
                f"checkpoint in {self.checkpoint_dir} is damaged ({type(exc).__name__}: {exc}); delete it to start over"
            ) from None


def _finite(obj: Any) -> Any:
    # JSON has no inf; callbacks start with best=inf.
    if isinstance(obj, float) and math.isinf(obj):
        return "inf" if obj > 0 else "-inf"
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _unfinite(obj: Any) -> Any:
    if obj in ("inf", "-inf"):
        return float(obj)
    if isinstance(obj, dict):
        return {k: _unfinite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unfinite(v) for v in obj]
    return obj


def shuffled_batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int) -> Batches:
    """Epoch -> mini-batches of in-memory tensors, shuffled by ``(seed, epoch)``.

    For cached features with several views (``x`` of shape ``[N, V, F]``) one
    view per photo is drawn each epoch: the flip augmentation of the linear
    strategy.
    """

    def gen(epoch: int) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        rng = np.random.Generator(np.random.PCG64(epoch_seed(seed, epoch)))
        order = torch.from_numpy(rng.permutation(len(y)))
        xs = x
        if x.dim() == 3:
            pick = torch.from_numpy(rng.integers(0, x.shape[1], len(y)))
            xs = x[torch.arange(len(y)), pick]
        for start in range(0, len(y), batch_size):
            idx = order[start : start + batch_size]
            yield xs[idx], y[idx]

    return gen
