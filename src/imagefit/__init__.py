"""imagefit: folders of labeled photos to an accurate, fast, deployable image classifier."""

from __future__ import annotations

from ._version import __version__
from .api import load, train
from .errors import ImagefitError
from .model import Model
from .train.session import Run

__all__ = ["ImagefitError", "Model", "Run", "__version__", "load", "train"]
