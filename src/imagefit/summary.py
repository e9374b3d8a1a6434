"""A backbone's summary, like Keras's ``model.summary()``: parameters per block, what each strategy trains, input and preprocessing."""

from __future__ import annotations

from typing import Any


def backbone_summary(name: str, *, unfreeze: float = 0.25) -> dict[str, Any]:
    """Everything ``imagefit models NAME`` prints, as a dict.

    The module is built without weights (the parameter counts are the same), so
    this works offline for any registered or timm name.

    Args:
        name: Registered name (``lite0``) or a timm model name.
        unfreeze: ``--unfreeze`` of the ``finetune`` strategy, to mark which blocks it trains.

    Raises:
        ModelError: for an unknown name.
    """
    from .models.registry import create_backbone, weights_available
    from .train.finetune import count_unfrozen, trainable_units

    module, spec = create_backbone(name, pretrained=False)
    units = trainable_units(module)
    n_unfrozen = count_unfrozen(len(units), unfreeze)
    blocks = []
    for i, unit in enumerate(units):
        blocks.append(
            {
                "index": i,
                "type": type(unit).__name__,
                "params": sum(p.numel() for p in unit.parameters()),
                "finetune": i >= len(units) - n_unfrozen,
            }
        )
    pre = spec.preprocess
    scratch = spec.weights.startswith("none")
    return {
        "name": spec.name,
        "architecture": spec.architecture,
        "description": spec.description,
        "input_size": spec.input_size,
        "preprocessing": {
            "resize": pre.resize_size,
            "crop": pre.input_size,
            "interpolation": pre.interpolation,
            "crop_pct": pre.crop_pct,
            "mean": list(pre.mean),
            "std": list(pre.std),
        },
        "num_features": spec.num_features,
        "weights": spec.weights,
        "weights_offline": None if scratch else weights_available(spec.name),
        "params": sum(p.numel() for p in module.parameters()),
        "blocks": blocks,
        "unfreeze": unfreeze,
        "finetune_params": sum(b["params"] for b in blocks if b["finetune"]),
    }
