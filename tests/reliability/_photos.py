"""Tiny distinct photos in folder layouts, for the layout, label and link tests (issue 17)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
from PIL import Image

COLOR = {"cats": (220, 40, 40), "dogs": (40, 200, 60)}
_seed = itertools.count()


def photos(folder: Path, n: int, color: tuple[int, int, int] = (120, 120, 120)) -> list[Path]:
    """``n`` distinct tiny JPEGs (a new seed each, so no two files in a test are identical)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        rng = np.random.default_rng(next(_seed))
        arr = np.clip(np.array(color)[None, None] + rng.normal(0, 30, (16, 16, 3)), 0, 255).astype(np.uint8)
        p = folder / f"{folder.name}.{i}.jpg"
        Image.fromarray(arr).save(p, quality=90)
        out.append(p)
    return out


def classes(root: Path, counts: dict[str, int]) -> Path:
    for name, n in counts.items():
        photos(root / name, n, COLOR.get(name, (90, 90, 200)))
    return root
