"""imagefit: folders of labeled photos to an accurate, fast, deployable image classifier."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# The subpackage `imagefit.train` is imported before the function of the same name is bound:
# importing a package sets its name on the parent once, at first import, so binding the
# function after it keeps `imagefit.train(...)` the function whatever is imported later.
from . import train as _training  # noqa: F401
from ._version import __version__
from .api import load, train
from .errors import ImagefitError

if TYPE_CHECKING:
    from .model import Model
    from .train.session import Run

__all__ = ["ImagefitError", "Model", "Run", "__version__", "load", "train"]


def __getattr__(name: str) -> Any:
    # PEP 562: `import imagefit` (and so every CLI start, `--help` included) stays free of torch;
    # the API loads on first use.
    if name == "Model":
        from .model import Model

        return Model
    if name == "Run":
        from .train.session import Run

        return Run
    raise AttributeError(f"module 'imagefit' has no attribute {name!r}")
