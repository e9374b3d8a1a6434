"""Train and validation sets from the user's folders.

A stop-gap copy: :mod:`imagefit.data.prepare` (with layout detection) replaces it.
"""

from __future__ import annotations

from pathlib import Path

from ..config import RunConfig
from ..data.discover import ImageSet, discover
from ..data.split import stratified_split
from ..errors import ConfigError


def prepare_data(data: str | Path, val: str | Path | None, config: RunConfig) -> tuple[ImageSet, ImageSet]:
    """Find train and validation sets: explicit ``val``, the layout's own, or a stratified split."""
    found = discover(data, labels_from_filename=config.data.labels_from_filename)
    train_set = found.train
    if val is not None:
        vfound = discover(val, labels_from_filename=config.data.labels_from_filename)
        val_set = vfound.val or vfound.train
        val_set = val_set.with_classes(train_set.classes)
    elif found.val is not None:
        val_set = found.val
    else:
        if config.data.val_split <= 0:
            raise ConfigError("a validation set is needed: pass --val DATA or --val-split > 0")
        train_set, val_set = stratified_split(train_set, config.data.val_split, config.train.seed)
    return train_set, val_set
