"""Composite backbones: several backbones whose pooled features are concatenated, as one backbone.

A composite is named by its members joined with ``+`` (``lite0+lite1+lite2``).
It is an ordinary backbone to the rest of imagefit: one spec, one module
(``members.0.…``, ``members.1.…`` in the state dict), one preprocessing, so a
linear head on its features is saved, loaded, exported and served like any
run. Every member sees the same pixels: the largest member's input size and
resizing, normalized with the first member's mean/std; a member that expects
another mean/std gets the batch re-normalized inside ``forward``, so the
exported graph computes exactly what training did.

Member lookup lives in :mod:`.registry` (which calls this module); this
module only parses names, combines specs and runs the members.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..errors import ConfigError, ModelError, invalid
from .spec import BackboneSpec

SEPARATOR = "+"
_ALLOWED = "two or more different backbone names joined with '+', e.g. lite0+lite1 (see `imagefit models`)"


def is_composite(name: str) -> bool:
    """Whether ``name`` names a composite (contains ``+``)."""
    return SEPARATOR in name


def member_names(name: str) -> list[str]:
    """The members of a composite name, in order.

    Raises:
        ConfigError: an empty member, a repeated one, or fewer than two.
    """
    members = [m.strip() for m in name.split(SEPARATOR)]
    if len(members) < 2 or any(not m for m in members) or len(set(members)) != len(members):
        raise invalid("model", name, _ALLOWED)
    return members


def composite_spec(name: str, members: Sequence[BackboneSpec]) -> BackboneSpec:
    """The spec of a composite of ``members`` (specs in the order named)."""
    largest = max(members, key=lambda s: s.input_size)  # the first of equal sizes
    first = members[0]
    return BackboneSpec(
        name=name,
        architecture=SEPARATOR.join(s.architecture for s in members),
        input_size=largest.input_size,
        mean=first.mean,
        std=first.std,
        interpolation=largest.interpolation,
        crop_pct=largest.crop_pct,
        num_features=sum(s.num_features for s in members),
        weights="; ".join(f"{s.name}: {s.weights}" for s in members),
        description="concatenated features of " + ", ".join(s.name for s in members),
        default_hidden=first.default_hidden,
        default_dropout=first.default_dropout,
    )


def member_error(name: str, member: str, exc: ModelError) -> ConfigError:
    """A bad member as one line about the composite name."""
    return invalid("model", name, f"{_ALLOWED}; member {member!r}: {exc}")


def check_strategy(name: str, strategy: str) -> None:
    """Refuse training a composite's weights: only a head on its frozen features.

    Fine-tuning would unfreeze "the last blocks" of several networks at once,
    which ``--unfreeze`` cannot express.

    Raises:
        ConfigError: a composite with a strategy other than ``linear``.
    """
    if is_composite(name) and strategy != "linear":
        raise invalid("strategy with a composite model", strategy, "linear (fine-tune one backbone instead)")


class ConcatBackbone(nn.Module):
    """Runs each member on the same batch and concatenates their pooled features.

    Args:
        members: The members' feature extractors, in order.
        specs: Their specs (same order), for their mean/std.
        spec: The composite's spec: the batch arrives normalized with its mean/std.
    """

    def __init__(self, members: Sequence[nn.Module], specs: Sequence[BackboneSpec], spec: BackboneSpec):
        super().__init__()
        if len(members) != len(specs):
            raise ModelError(f"{spec.name}: {len(members)} member modules for {len(specs)} specs")
        self.members = nn.ModuleList(members)
        # x_i = (x * std_c + mean_c - mean_i) / std_i = x * scale + shift: identity (None) when the stats agree.
        # Plain tuples, not buffers: the state dict holds only the members' weights.
        self._affine: list[tuple[tuple[float, ...], tuple[float, ...]] | None] = []
        for s in specs:
            if tuple(s.mean) == tuple(spec.mean) and tuple(s.std) == tuple(spec.std):
                self._affine.append(None)
            else:
                scale = tuple(sc / si for sc, si in zip(spec.std, s.std))
                shift = tuple((mc - mi) / si for mc, mi, si in zip(spec.mean, s.mean, s.std))
                self._affine.append((scale, shift))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = []
        for member, affine in zip(self.members, self._affine):
            xi = x
            if affine is not None:
                scale = torch.tensor(affine[0], dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
                shift = torch.tensor(affine[1], dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
                xi = x * scale + shift
            # reshape to the input's batch, not flatten: the members' TF-style padding leaves each output's batch
            # dimension its own symbol in the exported graph, and ONNX Runtime's shape inference (run before int8
            # quantization) cannot concatenate outputs whose batch symbols differ.
            outs.append(member(xi).reshape(x.shape[0], -1))
        return torch.cat(outs, dim=1)


__all__ = ["SEPARATOR", "ConcatBackbone", "check_strategy", "composite_spec", "is_composite", "member_error", "member_names"]
