"""Heads, probabilities (sigmoid for one logit, softmax otherwise, temperature) and the loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from imagefit.models.heads import Head, ImageClassifier, loss_fn, probabilities


def test_head_shapes() -> None:
    assert Head(8, 2).out_features == 1
    assert Head(8, 3).out_features == 3
    h = Head(8, 4, hidden=5, dropout=0.3)
    assert h(torch.randn(6, 8)).shape == (6, 4)
    layers = list(h.net)
    assert [type(m) for m in layers] == [nn.Dropout, nn.Linear, nn.ReLU, nn.Dropout, nn.Linear]
    assert [type(m) for m in Head(8, 2).net] == [nn.Dropout, nn.Linear]


def test_head_needs_two_classes() -> None:
    with pytest.raises(ValueError, match="num_classes must be >= 2"):
        Head(8, 1)


def test_image_classifier_composes() -> None:
    bb = nn.Sequential(nn.Flatten(), nn.Linear(12, 7))
    clf = ImageClassifier(bb, Head(7, 3))
    assert clf(torch.randn(2, 3, 2, 2)).shape == (2, 3)


@pytest.mark.parametrize("c", [1, 3, 10])
def test_probabilities_sum_to_one(c: int) -> None:
    torch.manual_seed(0)
    logits = torch.randn(50, c) * 5
    p = probabilities(logits)
    assert p.shape == (50, max(2, c))
    assert torch.allclose(p.sum(1), torch.ones(50), atol=1e-6)
    assert (p >= 0).all() and (p <= 1).all()


def test_one_logit_is_sigmoid() -> None:
    logits = torch.tensor([[0.0], [2.0], [-3.0]])
    p = probabilities(logits)
    assert torch.allclose(p[:, 1], torch.sigmoid(logits[:, 0]))
    assert torch.allclose(p[:, 0], 1 - torch.sigmoid(logits[:, 0]))
    assert p[0].tolist() == [0.5, 0.5]


def test_softmax_for_many_logits() -> None:
    logits = torch.tensor([[1.0, 2.0, 3.0]])
    assert torch.allclose(probabilities(logits), torch.softmax(logits, 1))


def test_temperature() -> None:
    logits = torch.tensor([[1.0, 3.0, -2.0], [0.5, 0.1, 0.2]])
    assert torch.allclose(probabilities(logits, 2.0), torch.softmax(logits / 2.0, 1))
    binary = torch.tensor([[3.0]])
    assert torch.allclose(probabilities(binary, 3.0)[:, 1], torch.sigmoid(torch.tensor([1.0])))
    # Higher temperature: less confident, same argmax.
    hot, cold = probabilities(logits, 5.0), probabilities(logits, 0.5)
    assert (hot.max(1).values < probabilities(logits).max(1).values).all()
    assert (cold.max(1).values > probabilities(logits).max(1).values).all()
    assert torch.equal(hot.argmax(1), cold.argmax(1))


def test_probabilities_of_half_precision_logits() -> None:
    p = probabilities(torch.tensor([[1.0, 2.0]], dtype=torch.bfloat16))
    assert p.dtype == torch.float32


def test_loss_binary_is_bce() -> None:
    logits = torch.tensor([[0.3], [-1.2], [2.0]])
    y = torch.tensor([1, 0, 0])
    expected = F.binary_cross_entropy_with_logits(logits[:, 0], y.float())
    assert torch.allclose(loss_fn(logits, y), expected)


def test_loss_multiclass_is_cross_entropy() -> None:
    logits = torch.tensor([[0.3, 0.1, 2.0], [-1.2, 0.0, 0.5]])
    y = torch.tensor([2, 0])
    assert torch.allclose(loss_fn(logits, y), F.cross_entropy(logits, y))


def test_loss_class_weights() -> None:
    logits = torch.tensor([[0.3], [-1.2], [2.0]])
    y = torch.tensor([1, 0, 0])
    w = torch.tensor([1.0, 3.0])
    expected = F.binary_cross_entropy_with_logits(logits[:, 0], y.float(), weight=torch.tensor([3.0, 1.0, 1.0]))
    assert torch.allclose(loss_fn(logits, y, w), expected)
    logits3 = torch.randn(4, 3)
    y3 = torch.tensor([0, 1, 2, 2])
    w3 = torch.tensor([1.0, 2.0, 0.5])
    assert torch.allclose(loss_fn(logits3, y3, w3), F.cross_entropy(logits3, y3, weight=w3))


def test_binary_and_softmax_heads_agree_on_equivalent_logits() -> None:
    # One logit z is the same model as two logits (0, z).
    z = torch.tensor([[0.7], [-2.0]])
    two = torch.cat([torch.zeros_like(z), z], 1)
    assert torch.allclose(probabilities(z), probabilities(two), atol=1e-6)
    y = torch.tensor([1, 0])
    assert torch.allclose(loss_fn(z, y), loss_fn(two, y), atol=1e-6)
