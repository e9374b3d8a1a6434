"""The learning-rate finder: exponential sweep, smoothed loss, fastai's valley rule, weights put back."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from imagefit.models.heads import Head
from imagefit.train.loop import make_optimizer, shuffled_batches
from imagefit.train.lr_find import result, sweep, valley


def _data(n: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 2
    x = torch.randn(n, 8, generator=g)
    x[torch.arange(n), y] += 2.0
    return x, y


def test_sweep_is_exponential_and_restores_the_weights() -> None:
    torch.manual_seed(0)
    head = Head(8, 2, dropout=0.0)
    before = {k: v.clone() for k, v in head.state_dict().items()}
    opt = make_optimizer("adam", [{"params": list(head.parameters())}], 1e-3, 0.0)
    x, y = _data()
    gen = shuffled_batches(x, y, 16, 0)
    lrs, losses = sweep(head, opt, itertools.chain.from_iterable(gen(e) for e in itertools.count()), start=1e-6, end=10.0, steps=60)
    assert lrs[0] == pytest.approx(1e-6) and len(lrs) == len(losses) >= 30
    ratios = np.diff(np.log(lrs))
    assert np.allclose(ratios, ratios[0])  # equal steps on a log scale
    assert all(torch.equal(before[k], v) for k, v in head.state_dict().items())
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3)  # the optimizer is put back too
    assert min(losses) < losses[0]  # the loss falls somewhere in the sweep


def test_sweep_stops_when_the_loss_explodes() -> None:
    torch.manual_seed(0)
    head = Head(8, 2, dropout=0.0)
    opt = make_optimizer("sgd", [{"params": list(head.parameters())}], 1e-3, 0.0)
    x, y = _data()
    gen = shuffled_batches(x * 50, y, 16, 0)
    lrs, _ = sweep(head, opt, itertools.chain.from_iterable(gen(e) for e in itertools.count()), start=1e-4, end=1e4, steps=100)
    assert len(lrs) < 100


def test_valley_picks_two_thirds_down_the_longest_descent() -> None:
    lrs = list(np.logspace(-7, 1, 100))
    # flat, then a steady descent from point 30 to 80, then divergence
    losses = [1.0] * 30 + list(np.linspace(1.0, 0.2, 50)) + list(np.linspace(0.3, 5.0, 20))
    got = valley(lrs, losses)
    i = lrs.index(got)
    assert 50 <= i <= 70  # well inside the descent, before its bottom (fastai: 2/3 of the way)


def test_result_writes_the_plot(tmp_path: Path) -> None:
    lrs = list(np.logspace(-6, 0, 40))
    losses = list(np.linspace(1.0, 0.1, 30)) + [0.2 * k for k in range(1, 11)]
    res = result(lrs, losses, tmp_path / "lr_find.png")
    assert res.plot_path == tmp_path / "lr_find.png" and res.plot_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert res.rule == "valley" and lrs[0] < res.suggestion < lrs[-1]


@pytest.mark.slow
def test_lr_find_and_lr_auto_on_the_sample(tmp_path: Path) -> None:
    import json

    import imagefit
    from imagefit.train.lr_find import lr_find

    sample = Path(imagefit.__file__).parent / "sample_data"
    found = lr_find(sample / "train", val=sample / "val", out=tmp_path / "lr", progress=False)
    assert found.plot_path is not None and found.plot_path.is_file() and 1e-6 < found.suggestion < 10
    # lite0 named: the default (auto) may step up to the composite, whose head is fitted without a learning rate.
    run = imagefit.train(sample / "train", val=sample / "val", out=tmp_path / "run", model="lite0", lr="auto", progress=False, epochs=5)
    record = json.loads((run.path / "imagefit.json").read_text())
    used = record["settings"]["head"]["lr"]
    assert record["config"]["train"]["lr"] == "auto" and used != 0.003 and 1e-6 < used < 10
    assert run.history[0]["lr"] == pytest.approx(used)
