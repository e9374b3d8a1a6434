"""The freeze/unfreeze policy: which blocks train, at which rate, BatchNorm frozen."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from imagefit.train.finetune import discriminative_groups, freeze_bn, parameter_groups


def _backbone() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 3), nn.Conv2d(4, 4, 3))


def test_parameter_groups_partial() -> None:
    bb, head = _backbone(), nn.Linear(4, 1)
    groups, n_unfrozen, n_units = parameter_groups(bb, head, 0.5, unfreeze_all=False)
    assert (n_unfrozen, n_units) == (2, 4)
    trainable = {id(p) for p in bb.parameters() if p.requires_grad}
    assert trainable == {id(p) for m in list(bb)[2:] for p in m.parameters()}
    assert [g["lr_scale"] for g in groups] == pytest.approx([0.1, 1.0, 1.0])  # two blocks, then the head
    assert groups[-1]["params"] == list(head.parameters())


def test_parameter_groups_all() -> None:
    bb, head = _backbone(), nn.Linear(4, 1)
    groups, n_unfrozen, n_units = parameter_groups(bb, head, 0.25, unfreeze_all=True)
    assert n_unfrozen == n_units == 4 and all(p.requires_grad for p in bb.parameters())
    assert [g["lr_scale"] for g in groups] == [1.0, 1.0]


def test_freeze_bn_keeps_running_stats() -> None:
    bb = _backbone()
    bb.train()
    freeze_bn(bb)
    bn = bb[1]
    assert not bn.training and bb[0].training
    before = bn.running_mean.clone()
    bb(torch.randn(2, 3, 8, 8) + 5)
    assert torch.equal(bn.running_mean, before)


def test_discriminative_groups_single_unit() -> None:
    assert discriminative_groups([nn.Linear(2, 2)])[0]["lr_scale"] == 1.0
