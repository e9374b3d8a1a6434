"""A backbone's spec and the table of registered builders (timm's ``register_model``).

Below both :mod:`.registry` (which looks names up) and :mod:`.backbones`
(which registers the builders), so neither imports the other back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from ..data.transforms import Preprocess
from ..errors import ModelError


@dataclass(frozen=True)
class BackboneSpec:
    """Everything about a backbone that the rest of imagefit needs to know."""

    name: str
    architecture: str
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str
    crop_pct: float
    num_features: int
    weights: str
    description: str = ""
    default_hidden: int = 0
    default_dropout: float = 0.2

    @property
    def preprocess(self) -> Preprocess:
        """The pixel pipeline this backbone expects."""
        return Preprocess(self.input_size, self.mean, self.std, self.interpolation, self.crop_pct)


Builder = Callable[[bool], nn.Module]
Availability = Callable[[], bool]


@dataclass(frozen=True)
class _Entry:
    spec: BackboneSpec
    build: Builder
    available: Availability


_REGISTRY: dict[str, _Entry] = {}


def register_backbone(spec: BackboneSpec, available: Availability = lambda: True) -> Callable[[Builder], Builder]:
    """Register a builder ``fn(pretrained: bool) -> nn.Module`` under ``spec.name``.

    Args:
        spec: The backbone's frozen spec.
        available: Tells whether pretrained weights can be loaded offline.
    """

    def deco(fn: Builder) -> Builder:
        if spec.name in _REGISTRY:
            raise ModelError(f"backbone '{spec.name}' is registered twice")
        _REGISTRY[spec.name] = _Entry(spec, fn, available)
        return fn

    return deco
