"""Trainer on separable synthetic features: learning, determinism, checkpoints, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from imagefit.errors import ArtifactError, ImagefitError
from imagefit.models.heads import Head
from imagefit.train.callbacks import CSVLogger, EarlyStopping, ModelCheckpoint, ReduceLROnPlateau
from imagefit.train.loop import Interrupted, Trainer, epoch_seed, make_optimizer, shuffled_batches


def _data(n: int = 120, f: int = 8, classes: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Linearly separable features: class c is centred on +3 in dimension c."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    x = torch.randn(n, f, generator=g)
    x[torch.arange(n), y] += 3.0
    return x, y


def _trainer(classes: int = 2, seed: int = 0, lr: float = 0.05, callbacks=None, ckpt: Path | None = None, opt: str = "adam") -> Trainer:
    torch.manual_seed(seed)
    head = Head(8, classes, dropout=0.1)
    groups = [{"params": list(head.parameters())}]
    return Trainer(head, make_optimizer(opt, groups, lr, 0.0), callbacks or [], seed=seed, checkpoint_dir=ckpt, phase="head")


def _validate(trainer: Trainer, x: torch.Tensor, y: torch.Tensor):
    from imagefit.models.heads import loss_fn

    def v() -> dict[str, float]:
        trainer.module.eval()
        with torch.no_grad():
            logits = trainer.module(x)
        pred = (logits[:, 0] > 0).long() if logits.shape[1] == 1 else logits.argmax(1)
        return {"val_loss": float(loss_fn(logits, y)), "val_accuracy": float((pred == y).float().mean())}

    return v


@pytest.mark.parametrize("classes", [2, 3])
def test_loss_goes_down(classes: int) -> None:
    x, y = _data(classes=classes)
    xv, yv = _data(60, classes=classes, seed=1)
    tr = _trainer(classes)
    hist = tr.fit(shuffled_batches(x, y, 16, 0), _validate(tr, xv, yv), epochs=15)
    assert len(hist) == 15
    assert hist[-1]["loss"] < hist[0]["loss"] * 0.5
    assert hist[-1]["val_loss"] < hist[0]["val_loss"]
    assert hist[-1]["accuracy"] > 0.9 and hist[-1]["val_accuracy"] > 0.9
    assert [h["epoch"] for h in hist] == list(range(15))
    assert all(h["lr"] == pytest.approx(0.05) for h in hist)


@pytest.mark.parametrize("opt", ["adam", "adamw", "sgd"])
def test_optimizers_learn(opt: str) -> None:
    x, y = _data()
    tr = _trainer(opt=opt, lr=0.05)
    hist = tr.fit(shuffled_batches(x, y, 16, 0), lambda: {}, epochs=8)
    assert hist[-1]["loss"] < hist[0]["loss"]


def test_make_optimizer_lr_scales() -> None:
    a, b = nn.Linear(2, 2), nn.Linear(2, 2)
    opt = make_optimizer("sgd", [{"params": a.parameters(), "lr_scale": 1.0}, {"params": b.parameters(), "lr_scale": 10.0}], 0.01, 1e-4)
    assert isinstance(opt, torch.optim.SGD)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.01, 0.1])
    tr = Trainer(nn.Sequential(a, b), opt, [])
    assert tr.get_lr() == pytest.approx(0.01)
    tr.set_lr(0.001)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.001, 0.01])  # ratio kept
    assert isinstance(make_optimizer("adamw", [{"params": a.parameters()}], 0.1, 0.0), torch.optim.AdamW)


def test_same_seed_identical_weights() -> None:
    x, y = _data()
    states = []
    for _ in range(2):
        tr = _trainer(seed=3)
        tr.fit(shuffled_batches(x, y, 16, 3), lambda: {}, epochs=4)
        states.append(tr.snapshot())
    for k in states[0]:
        assert torch.equal(states[0][k], states[1][k]), k
    tr = _trainer(seed=4)
    tr.fit(shuffled_batches(x, y, 16, 4), lambda: {}, epochs=4)
    assert not all(torch.equal(states[0][k], tr.snapshot()[k]) for k in states[0])


def test_shuffled_batches() -> None:
    x, y = _data(10)
    gen = shuffled_batches(x, y, 4, seed=0)
    e0 = list(gen(0))
    assert [len(b[1]) for b in e0] == [4, 4, 2]
    ys0 = torch.cat([b[1] for b in e0])
    assert sorted(ys0.tolist()) == sorted(y.tolist())
    assert torch.equal(torch.cat([b[1] for b in gen(0)]), ys0)  # same epoch, same order
    orders = {tuple(torch.cat([b[0][:, 0] for b in gen(e)]).tolist()) for e in range(5)}
    assert len(orders) > 1  # epochs differ
    # Several views: one view per photo and epoch.
    xv = torch.stack([x, x + 100], 1)
    vals = torch.cat([b[0] for b in shuffled_batches(xv, y, 4, 0)(0)])
    assert vals.shape == (10, 8)
    flipped = vals[:, 0] > 50
    assert 0 < int(flipped.sum()) < 10  # both views drawn (p of failing by chance ~ 2e-3, and seeded)
    back = torch.where(flipped[:, None], vals - 100, vals)
    assert sorted(back[:, 0].tolist()) == pytest.approx(sorted(x[:, 0].tolist()), abs=1e-4)  # each photo exactly once


def test_epoch_seed() -> None:
    assert epoch_seed(0, 1) != epoch_seed(0, 2) and epoch_seed(1, 0) != epoch_seed(0, 0)
    assert 0 <= epoch_seed(10**9, 10**6) < 2**31 - 1


def _callbacks(tmp_path: Path, saved: list[int]) -> list:
    return [
        ReduceLROnPlateau("val_loss", factor=0.5, patience=1),
        EarlyStopping("val_loss", patience=3),
        ModelCheckpoint(lambda s, e, logs: saved.append(e), "val_loss"),
        CSVLogger(tmp_path / "history.csv"),
    ]


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    x, y = _data()
    xv, yv = _data(40, seed=1)
    ckpt = tmp_path / "ckpt"
    tr = _trainer(callbacks=_callbacks(tmp_path, []), ckpt=ckpt)
    tr.fit(shuffled_batches(x, y, 16, 0), _validate(tr, xv, yv), epochs=3)
    assert (ckpt / "head.safetensors").is_file() and (ckpt / "head.json").is_file()
    meta = json.loads((ckpt / "head.json").read_text())
    assert meta["epochs_done"] == 3 and meta["phase"] == "head" and len(meta["history"]) == 3
    # The last epoch's weights (on_train_end restores the best only in memory after saving).
    fresh = _trainer(seed=99, callbacks=_callbacks(tmp_path, []), ckpt=ckpt)
    assert fresh.load_checkpoint() == 3
    from safetensors.torch import load_file

    saved = load_file(str(ckpt / "head.safetensors"))
    for k, v in fresh.module.state_dict().items():
        assert torch.equal(v, saved[f"model.{k}"])
    # Optimizer state restored (Adam moments, step).
    st_fresh = fresh.optimizer.state_dict()["state"]
    st_orig = tr.optimizer.state_dict()["state"]
    assert st_fresh.keys() == st_orig.keys()
    for pid in st_orig:
        for name, val in st_orig[pid].items():
            assert torch.equal(torch.as_tensor(st_fresh[pid][name]), torch.as_tensor(val))
    # Callback states restored.
    assert fresh.callbacks[1].best == pytest.approx(tr.callbacks[1].best)
    assert fresh.callbacks[1].best_state is not None
    assert fresh.history == tr.history


def test_resume_equals_uninterrupted(tmp_path: Path) -> None:
    x, y = _data()
    xv, yv = _data(40, seed=1)
    full = _trainer(callbacks=_callbacks(tmp_path / "a", []), ckpt=tmp_path / "a")
    full.fit(shuffled_batches(x, y, 16, 0), _validate(full, xv, yv), epochs=6)

    part = _trainer(callbacks=_callbacks(tmp_path / "b", []), ckpt=tmp_path / "b")
    # "Crash" after 3 epochs: the checkpoint is all that survives.
    part.fit(shuffled_batches(x, y, 16, 0), _validate(part, xv, yv), epochs=3)
    resumed = _trainer(seed=0, callbacks=_callbacks(tmp_path / "b", []), ckpt=tmp_path / "b")
    done = resumed.load_checkpoint()
    assert done == 3
    resumed.fit(shuffled_batches(x, y, 16, 0), _validate(resumed, xv, yv), epochs=6, start_epoch=done)
    assert [h["loss"] for h in resumed.history] == pytest.approx([h["loss"] for h in full.history], rel=1e-5)
    for k, v in full.snapshot().items():
        assert torch.allclose(v, resumed.snapshot()[k], atol=1e-6), k
    assert (tmp_path / "b" / "history.csv").read_text() == (tmp_path / "a" / "history.csv").read_text()


def test_no_checkpoint_dir_means_no_files(tmp_path: Path) -> None:
    x, y = _data(20)
    tr = _trainer()
    tr.fit(shuffled_batches(x, y, 8, 0), lambda: {}, epochs=1)
    assert tr.load_checkpoint() == 0
    assert list(tmp_path.iterdir()) == []


def test_load_checkpoint_missing_and_damaged(tmp_path: Path) -> None:
    tr = _trainer(ckpt=tmp_path)
    assert tr.load_checkpoint() == 0
    (tmp_path / "head.json").write_text("{}")
    (tmp_path / "head.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ArtifactError, match="unreadable"):
        tr.load_checkpoint()


def test_load_checkpoint_of_other_model(tmp_path: Path) -> None:
    x, y = _data(20)
    tr = _trainer(classes=3, ckpt=tmp_path)
    tr.fit(shuffled_batches(x, y % 3, 8, 0), lambda: {}, epochs=1)
    other = _trainer(classes=2, ckpt=tmp_path)
    with pytest.raises(ArtifactError, match="does not fit"):
        other.load_checkpoint()


def test_early_stopping_in_trainer_restores_best(tmp_path: Path) -> None:
    x, y = _data()
    calls = iter([1.0, 0.5, 0.7, 0.8, 0.9, 0.1])
    tr = _trainer(callbacks=[EarlyStopping("val_loss", patience=3)])
    snapshots = {}

    def validate() -> dict[str, float]:
        snapshots[tr.epoch] = tr.snapshot()
        return {"val_loss": next(calls)}

    hist = tr.fit(shuffled_batches(x, y, 16, 0), validate, epochs=6)
    assert len(hist) == 5  # stopped after 3 epochs without improvement on epoch 1's 0.5
    for k, v in tr.snapshot().items():
        assert torch.equal(v, snapshots[1][k])


def test_ctrl_c_raises_interrupted(tmp_path: Path) -> None:
    x, y = _data(20)
    tr = _trainer(ckpt=tmp_path)
    real = shuffled_batches(x, y, 8, 0)

    def batches(epoch: int):
        if epoch == 2:
            raise KeyboardInterrupt
        return real(epoch)

    with pytest.raises(Interrupted, match="resume") as info:
        tr.fit(batches, lambda: {}, epochs=5)
    assert info.value.exit_code == 130
    assert json.loads((tmp_path / "head.json").read_text())["epochs_done"] == 2


def test_divergence_is_reported() -> None:
    x, y = _data(20)
    x[0, 0] = float("nan")
    tr = _trainer()
    with pytest.raises(ImagefitError, match="diverged.*lower --lr"):
        tr.fit(shuffled_batches(x, y, 32, 0), lambda: {}, epochs=1)


def test_empty_epoch_is_an_error() -> None:
    tr = _trainer()
    with pytest.raises(ImagefitError, match="no readable training images"):
        tr.fit(lambda epoch: iter([]), lambda: {}, epochs=1)


def test_class_weights_change_training() -> None:
    x, y = _data()
    a = _trainer(seed=0)
    a.fit(shuffled_batches(x, y, 16, 0), lambda: {}, epochs=2)
    b = _trainer(seed=0)
    b.class_weights = torch.tensor([1.0, 5.0])
    b.fit(shuffled_batches(x, y, 16, 0), lambda: {}, epochs=2)
    assert not all(torch.equal(a.snapshot()[k], b.snapshot()[k]) for k in a.snapshot())


def test_discriminative_groups_rise_geometrically_to_full_rate() -> None:
    from torch import nn

    from imagefit.train.finetune import discriminative_groups

    units = [nn.Linear(2, 2) for _ in range(3)]
    for u in units:
        u.requires_grad_(False)
    groups = discriminative_groups(units)
    assert [round(g["lr_scale"], 4) for g in groups] == [0.1, round(0.1**0.5, 4), 1.0]
    assert all(p.requires_grad for u in units for p in u.parameters())
    assert discriminative_groups([nn.Linear(2, 2)])[0]["lr_scale"] == 1.0
