"""``imagefit inspect``: what is in a data folder before training on it."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .data.discover import ImageSet, discover
from .data.load import SkipLog, probe
from .data.loader import default_workers
from .errors import BadImageError


def _probe(path: Path) -> tuple[int, int] | str:
    try:
        return probe(path)
    except BadImageError as exc:
        return str(exc)


def inspect_data(data: str | Path, *, labels_from_filename: bool = False) -> dict[str, Any]:
    """Class counts, imbalance ratio, unreadable files and image size range of every split.

    Every file is fully decoded, so the unreadable list is exactly what training would skip.
    """
    found = discover(data, labels_from_filename=labels_from_filename)
    report: dict[str, Any] = {"data": str(data), "layout": found.layout, "classes": found.train.classes, "splits": {}}
    for name, s in (("train", found.train), ("val", found.val), ("test", found.test)):
        if s is not None:
            report["splits"][name] = _inspect_set(s)
    return report


def _inspect_set(s: ImageSet) -> dict[str, Any]:
    with ThreadPoolExecutor(default_workers()) as pool:
        results = list(pool.map(_probe, s.paths))
    skipped = SkipLog()
    sizes = []
    for p, r in zip(s.paths, results):
        if isinstance(r, str):
            skipped.add(p, r)
        else:
            sizes.append(r)
    counts = s.counts() if s.labeled else {}
    nonzero = [c for c in counts.values() if c]
    out: dict[str, Any] = {
        "n_files": len(s),
        "n_readable": len(sizes),
        "counts": counts,
        "imbalance_ratio": (max(nonzero) / min(nonzero)) if nonzero else None,
        "unreadable": skipped.as_list(),
    }
    if sizes:
        ws = [w for w, _ in sizes]
        hs = [h for _, h in sizes]
        out["size"] = {"min": [min(ws), min(hs)], "max": [max(ws), max(hs)], "median": [sorted(ws)[len(ws) // 2], sorted(hs)[len(hs) // 2]]}
    return out
