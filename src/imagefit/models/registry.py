"""Backbone registry in timm's style: ``@register_backbone`` + ``create_model``.

Each backbone has a frozen :class:`BackboneSpec` (input size, mean/std,
interpolation, where its weights come from) and a builder that returns a
module mapping an NCHW batch to pooled features ``[N, num_features]``.
Names not registered here fall through to timm, with weights from the local
Hugging Face cache. Names joined with ``+`` (``lite0+lite1``) are composites:
the members' features concatenated, one backbone (:mod:`.composite`).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ModelError
from . import backbones, composite, hub
from .spec import _REGISTRY, BackboneSpec, register_backbone

__all__ = ["BackboneSpec", "create_backbone", "create_model", "get_spec", "list_backbones", "register_backbone", "state_digest"]


def list_backbones() -> list[BackboneSpec]:
    """Registered backbones, in registration order."""
    return [e.spec for e in _REGISTRY.values()]


def weights_available(name: str) -> bool:
    """Whether ``name``'s pretrained weights can be loaded without a network (every member's, for a composite)."""
    if composite.is_composite(name):
        return all(weights_available(m) for m in composite.member_names(name))
    if name in _REGISTRY:
        return _REGISTRY[name].available()
    return backbones.timm_weights_path(hub.resolve_name(name)) is not None


def get_spec(name: str) -> BackboneSpec:
    """The spec of a registered backbone or any timm model name.

    Raises:
        ModelError: for a name neither registered nor known to timm.
        ConfigError: for a composite name with a bad member (one line naming it).
    """
    if composite.is_composite(name):
        return composite.composite_spec(name, _member_specs(name))
    if name in _REGISTRY:
        return _REGISTRY[name].spec
    spec = backbones.timm_spec(hub.resolve_name(name))  # a short alias (convnext_tiny) -> its timm name and tag
    if spec is None:
        raise ModelError(f"unknown model {name!r}; registered: {', '.join(_REGISTRY)}; or any timm model name (see timm.list_models())")
    return spec


def _member_specs(name: str) -> list[BackboneSpec]:
    specs = []
    for member in composite.member_names(name):
        try:
            specs.append(get_spec(member))
        except ModelError as exc:
            raise composite.member_error(name, member, exc) from None
    return specs


def create_backbone(name: str, pretrained: bool = True) -> tuple[nn.Module, BackboneSpec]:
    """Build a feature extractor and its spec.

    Args:
        name: Registered name (``lite0``), a timm model name, or members joined with ``+``.
        pretrained: Load pretrained weights (offline; raises if unavailable); for a
            composite, each member's.

    Raises:
        ModelError: unknown name, or weights not available offline.
    """
    spec = get_spec(name)
    if composite.is_composite(name):
        members = [create_backbone(m, pretrained) for m in composite.member_names(name)]
        module: nn.Module = composite.ConcatBackbone([m for m, _ in members], [s for _, s in members], spec)
    elif name in _REGISTRY:
        module = _REGISTRY[name].build(pretrained)
    else:
        if pretrained:
            # Downloads safetensors weights on first use (progress bar; HF_HUB_OFFLINE -> one clear error).
            hub.ensure_weights(spec.name)
        module = backbones.build_timm(spec.name, pretrained)
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
