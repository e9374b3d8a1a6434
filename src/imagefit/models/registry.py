"""Backbone registry in timm's style: ``@register_backbone`` + ``create_model``.

Each backbone has a frozen :class:`BackboneSpec` (input size, mean/std,
interpolation, where its weights come from) and a builder that returns a
module mapping an NCHW batch to pooled features ``[N, num_features]``.
Names not registered here fall through to timm, with weights from the local
Hugging Face cache.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
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


def list_backbones() -> list[BackboneSpec]:
    """Registered backbones, in registration order."""
    _ensure_loaded()
    return [e.spec for e in _REGISTRY.values()]


def weights_available(name: str) -> bool:
    """Whether ``name``'s pretrained weights can be loaded without a network."""
    _ensure_loaded()
    if name in _REGISTRY:
        return _REGISTRY[name].available()
    from .backbones import timm_weights_path

    return timm_weights_path(name) is not None


def get_spec(name: str) -> BackboneSpec:
    """The spec of a registered backbone or any timm model name.

    Raises:
        ModelError: for a name neither registered nor known to timm.
    """
    _ensure_loaded()
    if name in _REGISTRY:
        return _REGISTRY[name].spec
    from .backbones import timm_spec

    spec = timm_spec(name)
    if spec is None:
        raise ModelError(f"unknown model {name!r}; registered: {', '.join(_REGISTRY)}; or any timm model name (see timm.list_models())")
    return spec


def create_backbone(name: str, pretrained: bool = True) -> tuple[nn.Module, BackboneSpec]:
    """Build a feature extractor and its spec.

    Args:
        name: Registered name (``lite0``) or a timm model name.
        pretrained: Load pretrained weights (offline; raises if unavailable).

    Raises:
        ModelError: unknown name, or weights not available offline.
    """
    spec = get_spec(name)
    if name in _REGISTRY:
        module = _REGISTRY[name].build(pretrained)
    else:
        from .backbones import build_timm

        module = build_timm(name, pretrained)
    return module, spec


def create_model(
    name: str,
    num_classes: int,
    pretrained: bool = True,
    hidden: int | None = None,
    dropout: float | None = None,
) -> nn.Module:
    """Backbone + classification head, like ``timm.create_model(name, num_classes=...)``.

    Returns:
        An :class:`~imagefit.models.heads.ImageClassifier`.
    """
    from .heads import Head, ImageClassifier

    backbone, spec = create_backbone(name, pretrained)
    head = Head(
        spec.num_features,
        num_classes,
        hidden=spec.default_hidden if hidden is None else hidden,
        dropout=spec.default_dropout if dropout is None else dropout,
    )
    return ImageClassifier(backbone, head)


def _ensure_loaded() -> None:
    # Registration happens on import of the builders module.
    from . import backbones  # noqa: F401


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


def state_digest(module: nn.Module) -> str:
    """Content hash of a module's tensors: identifies a backbone's exact weights."""
    import hashlib

    h = hashlib.blake2b(digest_size=12)
    for k, v in module.state_dict().items():
        h.update(k.encode())
        t = v.detach().cpu().contiguous()
        h.update(str(t.dtype).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()
