"""The validity bounds of every value a run is defined by, written once.

The config (what a user asks for), the run record (what a saved model says)
and :class:`~imagefit.data.transforms.Preprocess` (what touches pixels) all
check against these, so a value one of them accepts is never refused by
another. This module imports nothing of imagefit but the errors: every layer
may use it.

Why these ranges:

* input size 32..1024: below 32 pixels the backbones' five stride-2 stages
  leave less than one pixel; above 1024 one batch no longer fits a
  typical GPU, and no registered or timm classification model asks for more.
* crop_pct 0.05..1.5: timm's values lie in 0.75..1.0; above 1 the photo is
  resized smaller than the crop and padded, and beyond 1.5 a third or more
  of every input would be padding; below 0.05 the resized photo is huge.
* mean in [0, 1], std in [1e-3, 10]: pixels are scaled to [0, 1] before
  normalizing; a std near 0 divides by zero.
* temperature 0.01..100: wider than the fit's search range
  (:data:`imagefit.calibrate.T_MIN`..``T_MAX``) so every fitted value is
  accepted, narrow enough that probabilities stay finite.
* 2..10000 classes: a classifier needs two; 10000 bounds memory of the head
  and of the report.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError, ImagefitError, invalid

INTERPOLATIONS = ("bicubic", "bilinear", "nearest", "lanczos")


@dataclass(frozen=True)
class Range:
    """A closed (or, at the low end, open) interval of allowed numbers."""

    low: float
    high: float
    low_open: bool = False
    integer: bool = False

    def __contains__(self, value: object) -> bool:
        if not is_number(value):
            return False
        v = float(value)  # type: ignore[arg-type]
        if self.integer and not (isinstance(value, int) or v.is_integer()):
            return False
        return (v > self.low if self.low_open else v >= self.low) and v <= self.high

    def describe(self) -> str:
        """The allowed values in words, for an error message."""
        if self.integer:
            return f"an integer from {int(self.low)} to {int(self.high)}"
        return f"a number in {'(' if self.low_open else '['}{float(self.low)}, {float(self.high)}]"


INPUT_SIZE = Range(32, 1024, integer=True)
CROP_PCT = Range(0.05, 1.5)
MEAN = Range(0.0, 1.0)
STD = Range(1e-3, 10.0)
TEMPERATURE = Range(0.01, 100.0)
N_CLASSES = Range(2, 10000, integer=True)
HEAD_DROPOUT = Range(0.0, 0.999)  # a saved head: 0 <= dropout < 1
DROPOUT = Range(0.0, 0.95)  # what a user may ask for
HIDDEN = Range(0, 65536, integer=True)
NUM_FEATURES = Range(1, 1 << 20, integer=True)
VAL_SPLIT = Range(0.0, 0.9)
LR = Range(0.0, 10.0, low_open=True)
LR_FACTOR = Range(0.0, 1.0, low_open=True)


# Cosine similarity of mirror-invariant backbone features from which two photos count as the
# same picture (imagefit.duplicates); set on generated copies of real photos (bench/duplicates.py).
# Here, free of numpy, so that the CLI can show it as a default without loading numpy.
NEAR_THRESHOLD = 0.88


def is_number(value: object) -> bool:
    """A finite int or float that is not a bool (JSON's ``true`` is no number)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


ErrorFactory = Callable[[str], ImagefitError]


def check(name: str, value: Any, allowed: Range, error: ErrorFactory = ConfigError) -> None:
    """Raise ``error("invalid NAME: received ...; allowed: ...")`` unless ``value`` is in ``allowed``."""
    if value not in allowed:
        raise error(str(invalid(name, value, allowed.describe())))


def check_channels(name: str, value: Any, allowed: Range, error: ErrorFactory = ConfigError) -> None:
    """Three numbers (one per RGB channel), each in ``allowed``."""
    if not (isinstance(value, (list, tuple)) and len(value) == 3 and all(v in allowed for v in value)):
        raise error(str(invalid(name, value, f"3 numbers, each {allowed.describe()}")))


def check_classes(classes: Any, error: ErrorFactory = ConfigError, name: str = "classes") -> None:
    """A list of 2..10000 unique, non-empty class names."""
    if not (isinstance(classes, (list, tuple)) and all(isinstance(c, str) for c in classes)):
        raise error(str(invalid(name, _short(classes), "a list of class names (strings)")))
    if len(classes) not in N_CLASSES:
        raise error(str(invalid(f"number of {name}", len(classes), N_CLASSES.describe())))
    if not all(c.strip() for c in classes):
        raise error(str(invalid(name, _short(classes), "non-empty names")))
    if len(set(classes)) != len(classes):
        dupes = sorted({c for c in classes if classes.count(c) > 1})
        raise error(str(invalid(name, f"duplicates {dupes[:5]}", "unique names")))


def check_interpolation(value: Any, error: ErrorFactory = ConfigError) -> None:
    """One of the resampling filters Preprocess implements."""
    if value not in INTERPOLATIONS:
        raise error(str(invalid("interpolation", value, INTERPOLATIONS)))


def _short(value: Any) -> Any:
    """The value itself when its repr is short, else its repr cut to 60 characters (one-line messages)."""
    text = repr(value)
    return value if len(text) <= 60 else text[:57] + "..."
