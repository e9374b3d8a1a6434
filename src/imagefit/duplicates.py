"""Exact and near-duplicate photos, within and across splits.

Exact copies share a content digest. Near-duplicates (a resized, re-encoded,
slightly cropped or mirrored copy) are pairs whose mirror-invariant backbone
features have a cosine similarity of at least ``NEAR_THRESHOLD``: the features of
a photo and of its mirror image are averaged, so a mirrored copy has the same
features as its original. The threshold was set on generated copies of real
photos and on the nearest distinct photos of cats_and_dogs_filtered
(bench/duplicates.py, BENCHMARKS.md "Duplicates").

The search is blocked matrix products over L2-normalised features: exact, in
memory proportional to the block, and fast enough for 100k photos on a CPU.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .bounds import NEAR_THRESHOLD
from .ood import normalize

_BLOCK = 2048


@dataclass(frozen=True)
class Pair:
    """Two photos that are the same picture (``exact``: the same bytes)."""

    a: Path
    b: Path
    split_a: str
    split_b: str
    similarity: float
    exact: bool

    @property
    def splits(self) -> str:
        """``train~val`` style key, splits in a fixed order."""
        return "~".join(sorted((self.split_a, self.split_b), key=_split_order))


def _split_order(split: str) -> tuple[int, str]:
    order = {"train": 0, "val": 1, "test": 2}
    return (order.get(split, 3), split)


@dataclass
class DuplicateReport:
    """All duplicate pairs found, exact first."""

    pairs: list[Pair] = field(default_factory=list)
    threshold: float = NEAR_THRESHOLD
    n_photos: int = 0

    def counts(self) -> dict[str, dict[str, int]]:
        """``{"train~val": {"exact": n, "near": m}, ...}``."""
        out: dict[str, Counter[str]] = {}
        for p in self.pairs:
            out.setdefault(p.splits, Counter())["exact" if p.exact else "near"] += 1
        return {k: {"exact": v["exact"], "near": v["near"]} for k, v in sorted(out.items())}

    def leaked(self, split: str, into: str = "train") -> list[Path]:
        """Photos of ``split`` that have a copy in ``into`` (each listed once)."""
        seen: dict[Path, None] = {}
        for p in self.pairs:
            if (p.split_a, p.split_b) == (split, into):
                seen[p.a] = None
            elif (p.split_b, p.split_a) == (split, into):
                seen[p.b] = None
        return list(seen)

    def to_dict(self) -> dict[str, object]:
        return {
            "threshold": self.threshold,
            "n_photos": self.n_photos,
            "counts": self.counts(),
            "pairs": [
                {
                    "a": str(p.a),
                    "b": str(p.b),
                    "split_a": p.split_a,
                    "split_b": p.split_b,
                    "similarity": round(p.similarity, 4),
                    "exact": p.exact,
                }
                for p in self.pairs
            ],
        }


def mirror_invariant(features: np.ndarray) -> np.ndarray:
    """``[N, views, F]`` with views (orig, flip) -> ``[N, F]`` unit rows; a single view is just normalised."""
    f = np.asarray(features, dtype=np.float32)
    if f.ndim == 2:
        return normalize(f)
    if f.shape[1] == 1:
        return normalize(f[:, 0])
    return normalize(normalize(f[:, 0]) + normalize(f[:, 1]))


def near_pairs(features: np.ndarray, threshold: float = NEAR_THRESHOLD, *, block: int = _BLOCK) -> list[tuple[int, int, float]]:
    """Index pairs ``(i, j, cosine)``, i < j, of unit rows with cosine >= ``threshold``."""
    x = np.ascontiguousarray(features, dtype=np.float32)
    found: list[tuple[int, int, float]] = []
    for s in range(0, len(x), block):
        sims = x[s : s + block] @ x[s:].T  # only the upper triangle: columns from s on
        rows, cols = np.nonzero(sims >= threshold)
        keep = cols > rows  # column index is relative to s, as is the row: j > i
        for r, c in zip(rows[keep], cols[keep]):
            found.append((s + int(r), s + int(c), float(sims[r, c])))
    found.sort()
    return found


def find_duplicates(
    paths: Sequence[Path],
    splits: Sequence[str],
    digests: Sequence[str | None],
    features: np.ndarray | None = None,
    *,
    threshold: float = NEAR_THRESHOLD,
) -> DuplicateReport:
    """Exact (same digest) and, given features ``[N, (views,) F]``, near-duplicate pairs.

    Args:
        paths: The photos, in the order of ``splits``, ``digests`` and ``features``.
        splits: Each photo's split name (``train``, ``val``, ``test``...).
        digests: Content digests (None for an unreadable file: never paired exactly).
        features: Backbone features of the same photos, or None for exact copies only.
        threshold: Cosine similarity from which two photos count as the same picture.
    """
    if not (len(paths) == len(splits) == len(digests)):
        raise ValueError("paths, splits and digests must have the same length")
    report = DuplicateReport(threshold=threshold, n_photos=len(paths))
    first: dict[str, int] = {}
    for i, d in enumerate(digests):
        if d is None:
            continue
        if d in first:
            j = first[d]
            report.pairs.append(Pair(Path(paths[j]), Path(paths[i]), splits[j], splits[i], 1.0, True))
        else:
            first[d] = i
    if features is not None and len(paths) > 1:
        unit = mirror_invariant(features)
        if len(unit) != len(paths):
            raise ValueError("features must have one row per path")
        for i, j, sim in near_pairs(unit, threshold):
            if digests[i] is not None and digests[i] == digests[j]:
                continue  # the same bytes: already paired exactly (with the first copy)
            report.pairs.append(Pair(Path(paths[i]), Path(paths[j]), splits[i], splits[j], min(sim, 1.0), False))
    report.pairs.sort(key=lambda p: (not p.exact, -p.similarity, str(p.a), str(p.b)))
    return report
