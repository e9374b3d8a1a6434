"""Time budgets: parsing ``--budget 10m``, and cost estimates made before a candidate starts.

The search decides what to run from estimates, not by racing the clock, so
the same seed and budget on the same machine choose the same model:

* extraction costs ``views x seconds per view``, where seconds per view is
  this machine's measured lite0 rate (kept in ``<cache>/search/rates.json``
  once measured, so later searches plan with the same figure unless a new
  measurement is off by more than :data:`REMEASURE`) times the
  backbone's relative cost (FLOPs at its input size, below);
* a head fit costs ``samples x features x outputs x fits`` times a constant
  measured the same way.

The wall clock is only a safety net: an extraction that runs past the hard
limit (budget + 8%) is stopped, which changes the result only when an
estimate was badly wrong.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from ..errors import invalid
from ..models.composite import is_composite, member_names
from ..paths import atomic_write_json, cache_root

# Multiply-adds relative to lite0 at its own 224 px (published FLOPs: 0.41 / 0.63 / 0.90 G).
RELATIVE_COST = {"lite0": 1.0, "lite1": 1.55, "lite2": 2.2}
NATIVE_SIZE = {"lite0": 224, "lite1": 240, "lite2": 260}
UNKNOWN_COST = 4.0  # any other backbone at 224 px: a conservative guess until measured
# Before anything is measured on this machine: 2 loaded cores (measured lite0 ~ 100-240 views/s).
DEFAULT_VIEW_SECONDS = 1 / 80
DEFAULT_FIT_CONSTANT = 2e-9  # seconds per (sample x feature x output x lbfgs fit)
HARD_LIMIT = 1.08  # stop an extraction at budget x this (the promise is < 10% over)
REMEASURE = 2.0  # a kept speed is replaced by a new measurement this many times faster or slower

_UNITS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def parse_budget(text: str | float | int) -> float:
    """``"90s"``, ``"10m"``, ``"1.5h"``, ``"600"`` or a number of seconds -> seconds.

    Raises:
        ConfigError: for anything else, or a budget that is not positive.
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h)?\s*", str(text))
        if m is None:
            raise invalid("budget", text, "a duration such as 90s, 10m or 1.5h")
        seconds = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    if not seconds > 0:
        raise invalid("budget", text, "a positive duration such as 90s, 10m or 1.5h")
    return seconds


def relative_cost(backbone: str, img_size: int | None) -> float:
    """Seconds per view of ``backbone`` at ``img_size`` relative to lite0 at 224 px.

    A composite (``lite0+lite1``) runs every member at its own input size (the
    largest member's unless given): the sum of the members' costs at that size.
    """
    if is_composite(backbone):
        members = member_names(backbone)
        size = img_size or max(NATIVE_SIZE.get(m, 224) for m in members)
        return sum(relative_cost(m, size) for m in members)
    native = NATIVE_SIZE.get(backbone, 224)
    base = RELATIVE_COST.get(backbone, UNKNOWN_COST)
    if img_size:
        base *= (img_size / native) ** 2
    return base


FIT_KEYS = ("fit_constant_binary", "fit_constant_multiclass")


def _fit_key(outputs: int) -> str:
    return FIT_KEYS[0] if outputs <= 1 else FIT_KEYS[1]


class Rates:
    """Measured speeds of this machine (per engine and core count), persisted once measured."""

    def __init__(self, engine: str, path: str | Path | None = None):
        self.path = Path(path) if path else cache_root() / "search" / "rates.json"
        self.key = f"{engine}-{os.cpu_count() or 1}cpu"
        self._all: dict[str, dict[str, float]] = {}
        try:
            with open(self.path, encoding="utf-8") as fh:
                loaded = json.load(fh)
            if isinstance(loaded, dict):
                self._all = {k: v for k, v in loaded.items() if isinstance(v, dict)}
        except (OSError, ValueError):
            pass
        mine = self._all.get(self.key, {})
        self.view_seconds = float(mine.get("view_seconds", DEFAULT_VIEW_SECONDS))
        # Binary and multi-class heads get their own constant: a constant learned on a one-logit fit
        # planned a 10-class lite1 head at 650 s when the same fits of lite0 took 21 s (clothing-small).
        self.fit_constants = {k: float(mine.get(k, DEFAULT_FIT_CONSTANT)) for k in FIT_KEYS}
        self.measured: set[str] = {k for k in ("view_seconds", *FIT_KEYS) if k in mine}

    def extraction(self, backbone: str, img_size: int | None, views: int) -> float:
        """Estimated seconds to compute ``views`` views."""
        return views * self.view_seconds * relative_cost(backbone, img_size)

    def head_fit(self, samples: int, features: int, outputs: int, fits: int) -> float:
        """Estimated seconds of ``fits`` lbfgs fits."""
        return samples * features * max(outputs, 1) * fits * self.fit_constants[_fit_key(outputs)]

    def learn_extraction(self, backbone: str, img_size: int | None, views: int, seconds: float) -> None:
        """Record a sizeable measurement: the first one, or one that says the kept figure is off (see :meth:`_keeps`)."""
        if views < 64 or seconds <= 0:
            return
        value = seconds / views / relative_cost(backbone, img_size)
        if self._keeps("view_seconds", self.view_seconds, value):
            return
        self.view_seconds = value
        self._save("view_seconds", value)

    def learn_fit(self, samples: int, features: int, outputs: int, fits: int, seconds: float) -> None:
        """Record a head-fit measurement of this kind (binary or multi-class), as :meth:`learn_extraction` does."""
        key = _fit_key(outputs)
        if seconds <= 0:
            return
        value = seconds / max(samples * features * max(outputs, 1) * fits, 1)
        if self._keeps(key, self.fit_constants[key], value):
            return
        self.fit_constants[key] = value
        self._save(key, value)

    def _keeps(self, name: str, kept: float, new: float) -> bool:
        """Whether the figure already measured stays: within :data:`REMEASURE` of the new one.

        Plans stay the same from one search to the next (the same seed and budget
        choose the same model) while the machine does, but a figure measured on a
        different machine, under other load, or wrongly, does not stay for ever.
        """
        return name in self.measured and max(new / kept, kept / new) <= REMEASURE

    def _save(self, name: str, value: float) -> None:
        self.measured.add(name)
        self._all.setdefault(self.key, {})[name] = value
        try:
            atomic_write_json(self.path, self._all)
        except OSError:
            pass  # a read-only cache only costs the next search its measured figures


__all__ = ["HARD_LIMIT", "RELATIVE_COST", "Rates", "parse_budget", "relative_cost"]
