"""Stratified, seeded train/validation split that is the same on every machine."""

from __future__ import annotations

import numpy as np

from ..errors import DataError
from .discover import ImageSet


def stratified_split(data: ImageSet, fraction: float, seed: int) -> tuple[ImageSet, ImageSet]:
    """Split ``data`` into train and validation, keeping class proportions.

    Paths are sorted before shuffling and NumPy's PCG64 generator is seeded
    explicitly, so the same files and seed give the same split on any OS.

    Args:
        data: A labeled image set.
        fraction: Share of each class that goes to validation, in (0, 1).
        seed: Random seed.

    Returns:
        ``(train, val)``.

    Raises:
        DataError: if a class has too few images to appear on both sides.
    """
    if not 0 < fraction < 1:
        raise DataError(f"val_split must be in (0, 1), received {fraction}")
    order = sorted(range(len(data)), key=lambda i: str(data.paths[i]))
    rng = np.random.Generator(np.random.PCG64(seed))
    train_idx: list[int] = []
    val_idx: list[int] = []
    for c, name in enumerate(data.classes):
        members = [i for i in order if data.labels[i] == c]
        if len(members) < 2:
            raise DataError(f"class '{name}' has {len(members)} image(s); a validation split needs at least 2 per class")
        perm = rng.permutation(len(members))
        n_val = min(max(1, round(len(members) * fraction)), len(members) - 1)
        val_idx.extend(members[j] for j in perm[:n_val])
        train_idx.extend(members[j] for j in perm[n_val:])
    return data.subset(sorted(train_idx)), data.subset(sorted(val_idx))
