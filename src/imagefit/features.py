"""Pooled backbone features, computed once per photo and cached on disk.

The cache key is (file content digest, backbone weight digest, preprocessing,
view), so renaming a photo keeps its entry, editing it invalidates it, and a
second ``train`` with another head, seed or learning rate skips extraction.
Entries are written atomically; a damaged one is recomputed.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data.load import SkipLog, content_digest, read_bytes
from .data.loader import default_workers, iter_batches
from .data.transforms import Preprocess
from .engine import Engine
from .errors import BadImageError
from .paths import atomic_write_bytes, cache_root

Progress = Callable[[int], None]


class FeatureCache:
    """One ``.npy`` per (photo, view) under ``<cache>/features/<namespace>/``."""

    def __init__(self, namespace: str, root: Path | None = None):
        self.dir = (root or cache_root()) / "features" / namespace

    def _path(self, digest: str, view: str) -> Path:
        return self.dir / digest[:2] / f"{digest}.{view}.npy"

    def get(self, digest: str, view: str) -> np.ndarray | None:
        """Cached features, or None when missing or unreadable."""
        p = self._path(digest, view)
        try:
            return np.load(p, allow_pickle=False)
        except (OSError, ValueError):
            return None

    def put(self, digest: str, view: str, features: np.ndarray) -> None:
        """Store features atomically."""
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(features, dtype=np.float32), allow_pickle=False)
        atomic_write_bytes(self._path(digest, view), buf.getvalue(), durable=False)


@dataclass
class Features:
    """Features of the readable photos of a set."""

    indices: np.ndarray  # positions in the input path list
    values: np.ndarray  # [len(indices), len(views), F]
    views: tuple[str, ...]
    extracted: int  # how many photos went through the backbone (0 = all from cache)


def _digest_file(path: Path) -> str | BadImageError:
    try:
        return content_digest(read_bytes(path))
    except BadImageError as exc:
        return exc


def extract(
    paths: Sequence[Path],
    engine: Engine,
    pre: Preprocess,
    skipped: SkipLog,
    *,
    cache: FeatureCache | None = None,
    views: Sequence[str] = ("orig",),
    progress: Progress | None = None,
    workers: int | None = None,
) -> Features:
    """Compute (or fetch from ``cache``) the features of every readable photo.

    Args:
        paths: Photo files.
        engine: The backbone's inference engine.
        pre: Its preprocessing.
        skipped: Receives unreadable files with their reasons.
        cache: Optional feature cache; None computes everything.
        views: ``orig`` and optionally ``flip`` (test-time/linear augmentation).
        progress: Called with the number of photos just finished.
        workers: Decoding threads.
    """
    views = tuple(views)
    n = len(paths)
    found: dict[int, np.ndarray] = {}
    if cache is not None:
        with ThreadPoolExecutor(workers or default_workers()) as pool:
            digests = list(pool.map(_digest_file, paths))
        for i, d in enumerate(digests):
            if isinstance(d, BadImageError):
                continue
            got = [cache.get(d, v) for v in views]
            if all(g is not None for g in got):
                found[i] = np.stack(got)  # type: ignore[arg-type]
        if progress and found:
            progress(len(found))
    todo = [i for i in range(n) if i not in found]
    computed: dict[int, np.ndarray] = {}
    for batch in iter_batches(paths, pre, max(32, engine.batch_size * 2), skipped, views=views, workers=workers, keep=lambda i: i not in found):
        out = engine(batch.arrays).reshape(len(batch.indices), len(views), -1)
        for j, i in enumerate(batch.indices):
            computed[i] = out[j]
            if cache is not None:
                for k, v in enumerate(views):
                    cache.put(batch.digests[j], v, out[j, k])
        if progress:
            progress(len(batch.indices))
    if progress:
        # Unreadable files count as done, so bars reach 100%.
        bad = len(todo) - len([i for i in todo if i in computed])
        if bad:
            progress(bad)
    found.update(computed)
    order = np.array(sorted(found), dtype=np.int64)
    if len(order):
        values = np.stack([found[i] for i in order]).astype(np.float32)
    else:
        values = np.zeros((0, len(views), 0), np.float32)
    return Features(order, values, views, extracted=len(computed))


__all__ = ["FeatureCache", "Features", "extract"]
