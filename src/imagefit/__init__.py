"""imagefit: folders of labeled photos to an accurate, fast, deployable image classifier."""

from __future__ import annotations

__version__ = "0.1.0"

from .api import load, train  # noqa: E402
from .errors import ImagefitError  # noqa: E402
from .model import Model  # noqa: E402
from .train.run import Run  # noqa: E402

__all__ = ["ImagefitError", "Model", "Run", "__version__", "load", "train"]
