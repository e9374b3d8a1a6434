"""The epoch table and the callbacks' messages while training (captured output), and per-batch schedules."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from imagefit.models.heads import Head, loss_fn
from imagefit.train.callbacks import EarlyStopping, ReduceLROnPlateau
from imagefit.train.loop import Trainer, make_optimizer, shuffled_batches
from imagefit.train.schedules import make_schedule
from imagefit.ui import EPOCH_HEADER


def _data(n: int = 96, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.randn(n, 8, generator=g)
    x[torch.arange(n), y] += 3.0
    return x, y


def _fixed_val(values: list[float]):
    """A validation whose val_loss follows ``values``: the callbacks' decisions are then known in advance."""
    it = iter(values)
    return lambda: {"val_loss": next(it), "val_accuracy": 0.5}


def _trainer(lines: list[str], callbacks=None, every: int = 1, schedule: str = "plateau", epochs: int = 1, ckpt: Path | None = None):
    torch.manual_seed(0)
    head = Head(8, 2, dropout=0.0)
    opt = make_optimizer("adam", [{"params": list(head.parameters())}], 0.003, 0.0)
    return Trainer(
        head,
        opt,
        callbacks or [],
        phase="head",
        report=lines.append,
        print_every=every,
        schedule=make_schedule(schedule, opt, epochs, 6),
        checkpoint_dir=ckpt,
    )


def test_one_row_per_epoch_with_header_once_and_80_columns() -> None:
    lines: list[str] = []
    x, y = _data()
    tr = _trainer(lines)
    tr.fit(shuffled_batches(x, y, 16, 0), _fixed_val([0.9, 0.8, 0.7]), 3)
    assert lines[0] == EPOCH_HEADER and lines.count(EPOCH_HEADER) == 1
    rows = lines[1:]
    assert [r.split()[0] for r in rows] == ["1", "2", "3"]
    assert all(r.split()[1] == "head" for r in rows)
    assert rows[2].split()[4] == "0.7000"  # val_loss column
    assert rows[0].split()[6] == "0.003"  # learning rate column
    assert max(len(line) for line in lines) <= 80


def test_plateau_and_early_stop_messages_under_their_epoch() -> None:
    lines: list[str] = []
    x, y = _data()
    cbs = [ReduceLROnPlateau("val_loss", factor=0.3, patience=2, min_delta=0.0), EarlyStopping("val_loss", patience=3)]
    tr = _trainer(lines, cbs)
    tr.fit(shuffled_batches(x, y, 16, 0), _fixed_val([0.5, 0.4, 0.6, 0.6, 0.6, 0.6]), 6)
    text = "\n".join(lines)
    # epoch 4 is the 2nd without improvement on 0.4 (epoch 2): the learning rate drops, on the line after row 4
    i = next(k for k, line in enumerate(lines) if line.split()[0] == "4")
    assert lines[i + 1].strip() == "val_loss did not improve for 2 epochs: learning rate 0.003 -> 0.0009"
    # epoch 5 is the 3rd: early stop, and the weights of epoch 2 come back
    j = next(k for k, line in enumerate(lines) if line.split()[0] == "5")
    assert lines[j + 1].strip() == "early stop at epoch 5: restored weights of epoch 2 (val_loss 0.4000)"
    assert "6  head" not in text  # stopped: epoch 6 never ran


def test_head_phase_rows_every_nth_plus_first_last_and_events() -> None:
    lines: list[str] = []
    x, y = _data()
    losses = [1.0 - 0.01 * k for k in range(20)]
    losses[12] = 2.0  # an epoch without improvement: no event yet (lr patience 2)
    tr = _trainer(lines, [ReduceLROnPlateau("val_loss", patience=1, min_delta=0.0)], every=5)
    tr.fit(shuffled_batches(x, y, 16, 0), _fixed_val(losses), 20)
    epochs = [int(line.split()[0]) for line in lines[1:] if line[:5].strip().isdigit()]
    assert epochs == [1, 5, 10, 13, 15, 20]  # 13: the epoch whose plateau message is printed
    assert any("learning rate 0.003 -> 0.0009" in line for line in lines)


def test_silent_without_report() -> None:
    x, y = _data()
    torch.manual_seed(0)
    head = Head(8, 2)
    tr = Trainer(head, make_optimizer("adam", [{"params": list(head.parameters())}], 0.01, 0.0), [EarlyStopping(patience=1)])
    tr.fit(shuffled_batches(x, y, 16, 0), _fixed_val([0.5, 0.6, 0.7]), 3)
    assert tr.events == []


@pytest.mark.parametrize("name", ["cosine", "onecycle"])
def test_per_batch_schedules_change_lr_within_the_run(name: str) -> None:
    lines: list[str] = []
    x, y = _data()  # 96 photos / 16 = 6 batches per epoch, as the schedule is told
    tr = _trainer(lines, schedule=name, epochs=4)
    hist = tr.fit(shuffled_batches(x, y, 16, 0), _fixed_val([0.9, 0.8, 0.7, 0.6]), 4)
    lrs = [h["lr"] for h in hist]
    if name == "cosine":
        assert lrs == sorted(lrs, reverse=True) and lrs[-1] < 0.003 * 0.1
    else:  # warm-up from 0.003/25 to the peak (0.003) in the first 30% of 24 steps, then down to nearly 0
        assert 0.003 / 25 < lrs[0] <= 0.003 + 1e-9  # epoch 1 ends at step 6 of the 7.2-step warm-up
        assert lrs == sorted(lrs, reverse=True) and lrs[-1] < 1e-4


def test_schedule_state_survives_resume(tmp_path: Path) -> None:
    x, y = _data()
    lines: list[str] = []
    full = _trainer(lines, schedule="onecycle", epochs=4)
    ref = [h["lr"] for h in full.fit(shuffled_batches(x, y, 16, 0), _fixed_val([0.9, 0.8, 0.7, 0.6]), 4)]
    first = _trainer(lines, schedule="onecycle", epochs=4, ckpt=tmp_path)
    first.fit(shuffled_batches(x, y, 16, 0), _fixed_val([0.9, 0.8]), 2)
    again = _trainer(lines, schedule="onecycle", epochs=4, ckpt=tmp_path)
    done = again.load_checkpoint()
    hist = again.fit(shuffled_batches(x, y, 16, 0), _fixed_val([0.7, 0.6]), 4, start_epoch=done)
    assert done == 2 and [h["lr"] for h in hist] == pytest.approx(ref)


def test_unknown_schedule_is_a_config_error() -> None:
    from imagefit.errors import ConfigError

    head = Head(8, 2)
    with pytest.raises(ConfigError, match="invalid schedule"):
        make_schedule("step", make_optimizer("adam", [{"params": list(head.parameters())}], 0.01, 0.0), 1, 1)


def test_loss_fn_unchanged_import() -> None:
    # the loop still trains through the shared loss (guards against a second, drifting copy)
    assert callable(loss_fn)


# -- configuration: per-phase lr, schedule, lr auto, warnings -----------------------------------------
def test_head_lr_and_lr_reach_their_phases() -> None:
    from imagefit.config import RunConfig, resolve
    from imagefit.models.registry import get_spec

    spec = get_spec("lite0")
    s = resolve(RunConfig.from_options(strategy="finetune", head_lr=0.01, head_epochs=7, lr=2e-5, epochs=2), spec)
    assert (s.head.epochs, s.head.lr) == (7, 0.01) and (s.images.epochs, s.images.lr) == (2, 2e-5)
    s = resolve(RunConfig.from_options(lr=0.0005, epochs=9), spec)
    assert (s.head.epochs, s.head.lr) == (9, 0.0005) and s.images is None


def test_lr_auto_and_schedule_round_trip_through_json() -> None:
    from imagefit.config import RunConfig
    from imagefit.errors import ConfigError

    cfg = RunConfig.from_options(lr="auto", schedule="onecycle", rotation=15, flip="vertical")
    again = RunConfig.from_dict(cfg.to_dict())
    assert again == cfg and again.train.lr == "auto"
    assert RunConfig.from_options(lr="0.002").train.lr == 0.002  # the CLI passes text
    with pytest.raises(ConfigError, match="lr: received 'fast'; allowed: a value of type float, or auto"):
        RunConfig.from_options(lr="fast")
    with pytest.raises(ConfigError, match="invalid schedule"):
        RunConfig.from_options(schedule="step")


def test_nonsense_combinations_warn() -> None:
    from imagefit.config import RunConfig
    from imagefit.models.registry import get_spec
    from imagefit.train.run import combination_warnings

    warns = combination_warnings(RunConfig.from_options(model="simple_cnn"), get_spec("simple_cnn"))
    assert len(warns) == 1 and "random filters" in warns[0] and "--strategy full" in warns[0]
    assert combination_warnings(RunConfig.from_options(model="simple_cnn", strategy="full"), get_spec("simple_cnn")) == []
    warns = combination_warnings(RunConfig.from_options(augment="heavy"), get_spec("lite0"))
    assert len(warns) == 1 and "only horizontal flips" in warns[0]
    assert "--rotation" in combination_warnings(RunConfig.from_options(rotation=10), get_spec("lite0"))[0]
    assert combination_warnings(RunConfig.from_options(augment="heavy", strategy="finetune"), get_spec("lite0")) == []
    assert combination_warnings(RunConfig.from_options(augment="light"), get_spec("lite0")) == []
