"""The freeze/unfreeze policy of fine-tuning, fastai's way.

Which blocks of a backbone train (:func:`trainable_units`,
:func:`count_unfrozen`), at which learning rate each (:func:`discriminative_groups`,
fastai's ``slice(lr/10, lr)``), and BatchNorm layers kept in eval mode
(:func:`freeze_bn`) so that small batches do not disturb their ImageNet
statistics.
"""

from __future__ import annotations

from typing import Any

from torch import nn


def trainable_units(backbone: nn.Module) -> list[nn.Module]:
    """The backbone's parameterized stages, input to output, for partial unfreezing.

    For timm EfficientNets: stem, each block of each stage, then the head conv.
    Other models: top-level children, with ``blocks``/``layers``/``stages``
    containers expanded one level.
    """
    inner = getattr(backbone, "model", backbone)
    units: list[nn.Module] = []
    for name, child in inner.named_children():
        if name in ("blocks", "layers", "stages", "features") and isinstance(child, nn.Sequential):
            for stage in child:
                if isinstance(stage, nn.Sequential) and len(stage) > 1:
                    units.extend(stage)
                else:
                    units.append(stage)
        elif any(p.numel() for p in child.parameters()):
            units.append(child)
    return [u for u in units if any(True for _ in u.parameters())]


def count_unfrozen(total: int, unfreeze: float) -> int:
    """How many trailing units ``--unfreeze`` means: a fraction (rounded up) or a count."""
    if unfreeze >= 1:
        return min(total, int(unfreeze))
    return max(1, min(total, int(-(-unfreeze * total // 1))))


def freeze_bn(module: nn.Module) -> None:
    """Put every BatchNorm layer of ``module`` in eval mode (running statistics kept as they are)."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


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


def parameter_groups(backbone: nn.Module, head: nn.Module, unfreeze: float, *, unfreeze_all: bool) -> tuple[list[dict[str, Any]], int, int]:
    """Freeze the backbone, unfreeze what trains, and build the optimizer's groups (each with an ``lr_scale``).

    Args:
        backbone: The feature extractor.
        head: The classification head (always trained, at the full rate).
        unfreeze: ``TrainConfig.unfreeze``: a fraction of the blocks or a count.
        unfreeze_all: Train every parameter at the full rate (``--strategy full``).

    Returns:
        ``(groups, n_unfrozen, n_units)``.
    """
    units = trainable_units(backbone)
    for p in backbone.parameters():
        p.requires_grad_(unfreeze_all)
    if unfreeze_all:
        n_unfrozen = len(units)
        groups: list[dict[str, Any]] = [{"params": list(backbone.parameters()), "lr_scale": 1.0}]
    else:
        # The deepest unfrozen block trains at lr, earlier ones geometrically slower down to
        # lr/10, as their features are more generic.
        n_unfrozen = count_unfrozen(len(units), unfreeze)
        groups = discriminative_groups(units[len(units) - n_unfrozen :])
    # The head is already trained when fine-tuning: the same low rate keeps it from drifting.
    groups.append({"params": list(head.parameters()), "lr_scale": 1.0})
    return groups, n_unfrozen, len(units)
