"""Pooled backbone features, computed once per photo and cached on disk.

The cache key is (file content digest, backbone weight digest, preprocessing,
pixel version, engine precision, view), so renaming a photo keeps its entry,
editing it invalidates it, and a second ``train`` with another head, seed or
learning rate skips extraction. Entries are written atomically and carry
their provenance and a checksum: a damaged, altered, mismatched or non-finite
entry is recomputed, never used.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import struct
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data.load import SkipLog, content_digest, read_bytes
from .data.loader import bounded_map, default_workers, iter_batches, photo_views
from .data.transforms import Preprocess
from .engine import Engine
from .errors import BadImageError, ModelError
from .paths import atomic_write_bytes, cache_root

Progress = Callable[[int], None]


# Bumped whenever decoding or resizing changes pixels, so features made by an older imagefit
# are recomputed rather than mixed with new ones. 2: torch's uint8 antialiased resize
# (was Pillow resampling the crop box).
PIXELS_VERSION = 2

# Each entry is a plain .npy file (numpy can read it) followed by a trailer:
# JSON provenance, its length (uint32 LE) and this marker. Entries without it are older formats.
_MARKER = b"IMGFIT1\n"
_TRAILER = struct.Struct("<I")


class FeatureCache:
    """One entry per (photo, view) under ``<cache>/features/<namespace>/<precision>/``.

    Every entry records what it was made from (photo digest, view, the cache's
    ``source``: backbone digest, preprocessing, pixel version, engine precision)
    and a checksum of its values. :meth:`get` returns only an entry whose
    record matches what is asked and whose values are intact and finite;
    anything else counts as missing, so it is recomputed and overwritten.
    """

    def __init__(self, namespace: str, root: Path | None = None, *, source: dict[str, str] | None = None, precision: str = "fp32"):
        self.namespace = namespace
        self.root = root or cache_root()
        self.precision = precision
        self.source = {**(source or {"namespace": namespace}), "precision": precision}
        # Precision is a folder, so that a cache built for one engine precision is never read by another.
        self.dir = self.root / "features" / namespace / precision

    @classmethod
    def for_backbone(cls, digest: str, pre: Preprocess, root: Path | None = None, precision: str = "fp32") -> FeatureCache:
        """The cache of one backbone's weights (``digest``) under one preprocessing and engine precision."""
        source = {"backbone": digest, "preprocess": pre.key(), "pixels": str(PIXELS_VERSION)}
        return cls(f"{digest}-{pre.key()}-px{PIXELS_VERSION}", root, source=source, precision=precision)

    def with_precision(self, precision: str) -> FeatureCache:
        """The same cache for features of another engine precision (``fp32``, ``bf16``, ...)."""
        if precision == self.precision:
            return self
        source = {k: v for k, v in self.source.items() if k != "precision"}
        return FeatureCache(self.namespace, self.root, source=source, precision=precision)

    def _path(self, digest: str, view: str) -> Path:
        return self.dir / digest[:2] / f"{digest}.{view}.npy"

    def _record(self, digest: str, view: str) -> dict[str, str]:
        return {**self.source, "photo": digest, "view": view}

    def get(self, digest: str, view: str) -> np.ndarray | None:
        """Cached features, or None when missing, unreadable, made from something else, altered or not finite."""
        try:
            data = self._path(digest, view).read_bytes()
        except OSError:
            return None
        return _parse_entry(data, self._record(digest, view))

    def get_views(self, digest: str, views: Sequence[str]) -> np.ndarray | None:
        """Cached ``[len(views), F]`` features of one photo, or None unless every view is cached."""
        got = []
        for v in views:
            g = self.get(digest, v)
            if g is None:
                return None
            got.append(g)
        return np.stack(got)

    def put(self, digest: str, view: str, features: np.ndarray) -> None:
        """Store features atomically with their record; non-finite features are never stored."""
        values = np.ascontiguousarray(features, dtype=np.float32)
        if not np.isfinite(values).all():
            return
        buf = io.BytesIO()
        np.save(buf, values, allow_pickle=False)
        array = buf.getvalue()
        record = {**self._record(digest, view), "checksum": _checksum(array)}
        meta = json.dumps(record, sort_keys=True).encode()
        atomic_write_bytes(self._path(digest, view), array + meta + _TRAILER.pack(len(meta)) + _MARKER, durable=False)


def _checksum(array_bytes: bytes) -> str:
    return hashlib.blake2b(array_bytes, digest_size=16).hexdigest()


def _parse_entry(data: bytes, expected: dict[str, str]) -> np.ndarray | None:
    """The values of an entry if its record is ``expected`` plus a matching checksum; else None."""
    tail = len(_MARKER) + _TRAILER.size
    if len(data) < tail or not data.endswith(_MARKER):
        return None
    (meta_len,) = _TRAILER.unpack_from(data, len(data) - tail)
    split = len(data) - tail - meta_len
    if split <= 0:
        return None
    array, meta = data[:split], data[split : len(data) - tail]
    try:
        record = json.loads(meta)
    except ValueError:
        return None
    if not isinstance(record, dict) or record.pop("checksum", None) != _checksum(array) or record != expected:
        return None
    values = _read_vector(array)
    if values is None or not np.isfinite(values).all():
        return None
    return values


# The one header ``np.save`` writes for a 1-D little-endian float32 vector (format 1.0).
_NPY_VECTOR = re.compile(rb"\x93NUMPY\x01\x00(..)\{'descr': '<f4', 'fortran_order': False, 'shape': \((\d+),\), \} *\n", re.DOTALL)


def _read_vector(array: bytes) -> np.ndarray | None:
    """The float32 vector an entry holds, or None for anything else.

    Not ``np.load``: it parses the header with ``ast.literal_eval``, and CPython 3.11's
    compiler is not safe to run from several threads at once (``SystemError: AST constructor
    recursion depth mismatch``), which is how entries are read. The cache only ever writes this
    one header, so matching it exactly is also stricter.
    """
    m = _NPY_VECTOR.match(array)
    if m is None:
        return None
    (header_len,) = struct.unpack("<H", m.group(1))
    start, count = 10 + header_len, int(m.group(2))
    if m.end() != start or len(array) != start + 4 * count:
        return None
    return np.frombuffer(array, dtype="<f4", offset=start).astype(np.float32, copy=True)


@dataclass
class Features:
    """Features of the readable photos of a set."""

    indices: np.ndarray  # positions in the input path list
    values: np.ndarray  # [len(indices), len(views), F]
    views: tuple[str, ...]
    extracted: int  # how many photos went through the backbone (0 = all from cache)


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
        workers: Decoding threads (batched engines; a concurrent engine
            uses one per engine thread).
    """
    views = tuple(views)
    if cache is not None:
        # Features of one precision are never mixed with another's (a head is fit on one kind).
        cache = cache.with_precision(engine.precision)
    if engine.concurrent:
        found, extracted = _per_photo(paths, engine, pre, skipped, cache, views, progress)
    else:
        found, extracted = _batched(paths, engine, pre, skipped, cache, views, progress, workers)
    order = np.array(sorted(found), dtype=np.int64)
    if len(order):
        values = np.stack([found[i] for i in order]).astype(np.float32)
        bad = int((~np.isfinite(values).reshape(len(order), -1).all(axis=1)).sum())
        if bad:
            # Never handed on: a head fit on them fails late, a prediction from them is nan.
            raise ModelError(
                f"the backbone gave non-finite features (NaN or infinity) for {bad} of {len(order)} photos: its weights may be damaged"
            )
    else:
        values = np.zeros((0, len(views), 0), np.float32)
    return Features(order, values, views, extracted=extracted)


def _per_photo(
    paths: Sequence[Path],
    engine: Engine,
    pre: Preprocess,
    skipped: SkipLog,
    cache: FeatureCache | None,
    views: tuple[str, ...],
    progress: Progress | None,
) -> tuple[dict[int, np.ndarray], int]:
    """Each of the engine's feed threads reads, looks up, decodes and runs one photo at a time.

    Each file is read once (the batched path reads every file to look it up,
    then the misses again), nothing is handed between decode and inference
    threads, and no batch is assembled; measured a little faster than the
    batched path with the same engine. How many threads: :attr:`Engine.feed_threads`.
    """

    def one(i: int) -> tuple[np.ndarray, str | None]:
        data = read_bytes(paths[i])
        digest = content_digest(data)
        got = cache.get_views(digest, views) if cache is not None else None
        if got is not None:
            return got, None
        return engine.run_here(np.stack(photo_views(data, pre, views))), digest

    found: dict[int, np.ndarray] = {}
    extracted = unreported = 0
    for i, fut in bounded_map(one, range(len(paths)), engine.feed_threads, engine.feed_threads * 4, "imagefit-extract"):
        try:
            found[i], new = fut.result()
        except BadImageError as exc:
            skipped.add(paths[i], str(exc))  # unreadable files count as done too, so bars reach 100%
        else:
            if new is not None:
                extracted += 1
                if cache is not None:
                    # Written from this one thread, whatever the number of workers: two
                    # threads creating files at once cost each 2.4x the CPU (80 against 33 us).
                    for k, v in enumerate(views):
                        cache.put(new, v, found[i][k])
        unreported += 1
        if progress and (unreported == 16 or i == len(paths) - 1):
            progress(unreported)
            unreported = 0
    return found, extracted


def _digest_file(path: Path) -> str | BadImageError:
    try:
        return content_digest(read_bytes(path))
    except BadImageError as exc:
        return exc


def _batched(
    paths: Sequence[Path],
    engine: Engine,
    pre: Preprocess,
    skipped: SkipLog,
    cache: FeatureCache | None,
    views: tuple[str, ...],
    progress: Progress | None,
    workers: int | None,
) -> tuple[dict[int, np.ndarray], int]:
    """Decode threads feed batches to the engine (torch on a GPU, OpenVINO); cache hits found first."""
    found: dict[int, np.ndarray] = {}
    if cache is not None:
        with ThreadPoolExecutor(workers or default_workers()) as pool:
            digests = list(pool.map(_digest_file, paths))
        for i, d in enumerate(digests):
            if isinstance(d, BadImageError):
                continue
            got = cache.get_views(d, views)
            if got is not None:
                found[i] = got
        if progress and found:
            progress(len(found))
    todo = len(paths) - len(found)
    computed = 0
    for batch in iter_batches(
        paths, pre, max(32, engine.batch_size * 2), skipped, views=views, workers=workers, keep=lambda i: i not in found
    ):
        out = engine(batch.arrays).reshape(len(batch.indices), len(views), -1)
        for j, i in enumerate(batch.indices):
            found[i] = out[j]
            if cache is not None:
                for k, v in enumerate(views):
                    cache.put(batch.digests[j], v, out[j, k])
        computed += len(batch.indices)
        if progress:
            progress(len(batch.indices))
    if progress and todo > computed:
        progress(todo - computed)  # unreadable files count as done, so bars reach 100%
    return found, computed


__all__ = ["PIXELS_VERSION", "FeatureCache", "Features", "extract"]
