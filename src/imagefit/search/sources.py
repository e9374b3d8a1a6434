"""Pooled features of one backbone at one input size, through the library's extraction and shared cache.

A :class:`FeatureSource` is what the training run does for ``linear``
(``create_backbone`` -> ``Engine`` -> ``FeatureCache.for_backbone`` ->
``extract``), so a search and a later plain run share cached features.
It also tells how many photos are still missing from the cache, and
measures seconds per computed view, for the budget's cost estimates.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..data.discover import ImageSet
from ..data.load import SkipLog, content_digest, read_bytes
from ..data.transforms import Preprocess
from ..errors import BadImageError
from ..features import FeatureCache, extract
from ..models.registry import BackboneSpec, create_backbone, get_spec, state_digest

if TYPE_CHECKING:
    from torch import nn

    from ..engine import Engine

Progress = Callable[[int], None]


@dataclass(frozen=True)
class SourceKey:
    """A backbone at an input size (None: the backbone's own)."""

    backbone: str
    img_size: int | None = None

    @property
    def label(self) -> str:
        return self.backbone if self.img_size is None else f"{self.backbone}@{self.img_size}"


def preprocess_for(spec: BackboneSpec, img_size: int | None) -> Preprocess:
    """The backbone's preprocessing, at ``img_size`` when given (as ``--img-size`` does in a run)."""
    pre = spec.preprocess
    if img_size:
        pre = Preprocess(int(img_size), pre.mean, pre.std, pre.interpolation, pre.crop_pct)
    return pre


@dataclass
class SetFeatures:
    """Features of the readable photos of one set: ``values[i]`` belongs to ``labels[i]``."""

    indices: np.ndarray
    values: np.ndarray  # [n, views, F]
    labels: np.ndarray  # [n]
    views: tuple[str, ...]


class FeatureSource:
    """Lazily built backbone + engine + cache for one :class:`SourceKey`."""

    def __init__(self, key: SourceKey, *, engine: str = "auto", device: str = "cpu", workers: int | None = None):
        self.key = key
        self.spec = get_spec(key.backbone)
        self.pre = preprocess_for(self.spec, key.img_size)
        self.engine_kind = engine
        self.device = device
        self.workers = workers
        self._engine: Engine | None = None
        self._cache: FeatureCache | None = None
        self._backbone: nn.Module | None = None
        self.digest = ""
        self.seconds = 0.0  # time spent in extract()
        self.computed_views = 0  # views that went through the backbone

    def _ensure(self) -> None:
        if self._engine is not None:
            return
        from ..engine import Engine, model_key

        backbone, _ = create_backbone(self.key.backbone, pretrained=True)
        self._backbone = backbone
        self.digest = state_digest(backbone)
        self._engine = Engine(backbone, self.pre, model_key(self.spec.name, self.digest), self.engine_kind, self.device)
        self._cache = FeatureCache.for_backbone(self.digest, self.pre)

    def module(self) -> nn.Module:
        """The backbone whose features this source computes: the one a chosen model must be saved with.

        Rebuilding it by name is not the same module for a backbone whose creation is not
        deterministic (``simple_cnn``'s random filters), so the saved run takes this one.
        """
        self._ensure()
        assert self._backbone is not None
        return self._backbone

    def missing(self, digests: Sequence[str | None], views: Sequence[str]) -> int:
        """How many of these photos (content digests; None = unreadable) lack a cached view."""
        self._ensure()
        assert self._cache is not None and self._engine is not None
        # Where extract() looks: the folder of the engine's precision (bf16 on AMX), not the fp32 one;
        # looking in the other counted a warm cache as all missing, and the rate learned from that
        # "extraction" of cache hits was ten times too fast.
        cache = self._cache.with_precision(self._engine.precision)
        n = 0
        for d in digests:
            if d is None:
                continue
            # FeatureCache has no public existence test; a stat is far cheaper than loading the array.
            if not all(cache._path(d, v).is_file() for v in views):
                n += 1
        return n

    def features(self, images: ImageSet, views: Sequence[str], skipped: SkipLog, progress: Progress | None = None) -> SetFeatures:
        """Features of ``images`` (cached where possible); unreadable photos go to ``skipped``."""
        self._ensure()
        assert self._engine is not None
        t0 = time.perf_counter()
        got = extract(
            images.paths, self._engine, self.pre, skipped, cache=self._cache, views=tuple(views), progress=progress, workers=self.workers
        )
        self.seconds += time.perf_counter() - t0
        self.computed_views += got.extracted * len(views)
        labels = np.asarray(images.labels, np.int64)[got.indices] if len(got.indices) else np.zeros(0, np.int64)
        return SetFeatures(got.indices, got.values, labels, tuple(views))


def file_digests(paths: Sequence[Path]) -> list[str | None]:
    """Content digests of files as the feature cache keys them (None for unreadable ones)."""
    out: list[str | None] = []
    for p in paths:
        try:
            out.append(content_digest(read_bytes(p)))
        except BadImageError:
            out.append(None)
    return out


__all__ = ["FeatureSource", "SetFeatures", "SourceKey", "file_digests", "preprocess_for"]
