"""Classification heads and the backbone+head module.

Two classes use one logit and a sigmoid (the Keras notebooks' binary head);
more use softmax. Either way :func:`probabilities` returns one column per
class, so everything downstream is written once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Head(nn.Module):
    """Pooled features -> optional hidden dense layer -> dropout -> logits."""

    def __init__(self, in_features: int, num_classes: int, hidden: int = 0, dropout: float = 0.0):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, received {num_classes}")
        self.num_classes = num_classes
        self.out_features = 1 if num_classes == 2 else num_classes
        layers: list[nn.Module] = []
        width = in_features
        if hidden:
            layers += [nn.Dropout(dropout), nn.Linear(in_features, hidden), nn.ReLU(inplace=True)]
            width = hidden
        layers += [nn.Dropout(dropout), nn.Linear(width, self.out_features)]
        self.net = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)


class ImageClassifier(nn.Module):
    """A feature-extracting backbone followed by a :class:`Head`."""

    def __init__(self, backbone: nn.Module, head: Head):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def probabilities(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Logits -> ``[N, num_classes]`` probabilities (sigmoid for one logit)."""
    z = logits.float() / temperature
    if z.shape[-1] == 1:
        p = torch.sigmoid(z[:, 0])
        return torch.stack([1 - p, p], dim=1)
    return torch.softmax(z, dim=1)


def predicted_classes(logits: torch.Tensor) -> torch.Tensor:
    """Class index per row: the sign of a single logit, else the argmax."""
    if logits.shape[-1] == 1:
        return (logits[:, 0] > 0).long()
    return logits.argmax(1)


def loss_fn(logits: torch.Tensor, targets: torch.Tensor, class_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Binary cross-entropy for one logit, cross-entropy otherwise; optional class weights."""
    if logits.shape[-1] == 1:
        y = targets.float()
        weight = class_weights[targets] if class_weights is not None else None
        return F.binary_cross_entropy_with_logits(logits[:, 0].float(), y, weight=weight)
    return F.cross_entropy(logits.float(), targets, weight=class_weights)
