"""Metric dictionaries flattened to the scalars that trackers store."""

from __future__ import annotations

import math
from typing import Any


def scalars(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Finite numbers of a nested metrics dict, keyed ``a/b/c`` (lists and strings are left out)."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(scalars(value, name + "/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[name] = float(value)
    return out


def epoch_scalars(phase: str, logs: dict[str, float]) -> dict[str, float]:
    """One epoch's logs as ``<phase>/<name>`` (``head/val_loss``...), finite values only."""
    return {f"{phase or 'train'}/{k}": float(v) for k, v in logs.items() if isinstance(v, (int, float)) and math.isfinite(v)}
