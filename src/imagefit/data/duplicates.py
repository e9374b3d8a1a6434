"""The same photo in two splits: a validation or test score measured partly on training photos.

Photos are compared by content digest (the feature cache's key,
:func:`~imagefit.data.load.content_digest`), so a copy under another name or
in another folder is found; a re-encoded or resized copy is not.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BadImageError
from .load import content_digest, read_bytes

_WHAT = {"val": "validation accuracy", "test": "test accuracy"}


@dataclass
class Duplicates:
    """Photos of a later split with an identical copy in an earlier one.

    ``pairs["train/val"]`` lists ``(train path, val path)``, one entry per
    validation photo that has a copy in train (the first such copy).
    """

    pairs: dict[str, list[tuple[Path, Path]]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return any(self.pairs.values())

    def counts(self) -> dict[str, int]:
        """Photos with a copy, per split pair (``{"train/val": 3}``); pairs without copies are left out."""
        return {k: len(v) for k, v in self.pairs.items() if v}

    def messages(self) -> list[str]:
        """One warning line per split pair with copies, with an example."""
        out = []
        for key, pairs in self.pairs.items():
            if not pairs:
                continue
            first, second = key.split("/")
            a, b = pairs[0]
            what = _WHAT.get(second, f"{second} score") if first == "train" else f"the {first} and {second} scores"
            out.append(
                f"your {what} is optimistic: {len(pairs)} {second} photo(s) have an identical copy in {first} "
                f"(e.g. {b} = {a}); remove them from one of the two"
            )
        return out

    def as_dict(self) -> dict[str, list[dict[str, str]]]:
        """JSON-ready ``{"train/val": [{"first": path, "second": path}, ...]}``."""
        return {k: [{"first": str(a), "second": str(b)} for a, b in v] for k, v in self.pairs.items() if v}


def _digest(path: Path) -> str | None:
    try:
        return content_digest(read_bytes(path))
    except BadImageError:
        return None  # unreadable files are reported where they are read


def find_duplicates(splits: Mapping[str, Sequence[Path]], workers: int | None = None) -> Duplicates:
    """Photos that appear (same content) in two of ``splits``, for every pair in the given order.

    Args:
        splits: Split name -> paths, e.g. ``{"train": ..., "val": ..., "test": ...}``;
            each pair ``(earlier, later)`` is checked.
        workers: Threads reading files (default: one per core, at least two, as for decoding).
    """
    names = [n for n, paths in splits.items() if paths]
    digests: dict[str, list[str | None]] = {}
    with ThreadPoolExecutor(workers or max(2, os.cpu_count() or 2), thread_name_prefix="imagefit-digest") as pool:
        for n in names:
            digests[n] = list(pool.map(_digest, splits[n]))
    out = Duplicates()
    for i, first in enumerate(names):
        seen: dict[str, Path] = {}
        for p, d in zip(splits[first], digests[first]):
            if d is not None:
                seen.setdefault(d, p)
        for second in names[i + 1 :]:
            out.pairs[f"{first}/{second}"] = [(seen[d], p) for p, d in zip(splits[second], digests[second]) if d is not None and d in seen]
    return out
