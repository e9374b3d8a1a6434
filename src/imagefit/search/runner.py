"""``search``: the most accurate model a time budget buys, chosen by validation log loss.

Candidates, in order of value per second (each estimated before it starts,
skipped if it would not fit):

1. a linear head (``C`` chosen on validation, or by k-fold CV for small sets)
   on cached lite0 features, trained on the photos alone and on photos +
   mirror images, each scored with and without flip averaging (TTA);
2. the same on the other backbones whose weights are present locally
   (lite1, lite2, cached timm models), cheapest first;
3. ensembles of the backbones run so far: concatenated features -> one
   linear head, and averaged probabilities (both need a multi-backbone model
   format, so they win only by a clear margin, see ``ensemble_margin``);
4. the best backbone at a higher input resolution.

Selection: the lowest validation log loss; for sets under 1,000 photos the
out-of-fold log loss of k-fold CV on the training photos. Reproducible: folds
and candidate order are fixed by the seed; what runs is decided from
estimates (:mod:`.budget`), not by racing the clock.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..calibrate import log_loss
from ..data.discover import ImageSet
from ..data.load import SkipLog
from ..errors import ConfigError
from ..models.heads import Head
from .budget import HARD_LIMIT, Rates
from .leaderboard import Entry, Leaderboard
from .linear import DEFAULT_CS, DEFAULT_FOLDS, LinearFit, fit_linear, to_head
from .sources import FeatureSource, SetFeatures, SourceKey, file_digests

SMALL_SET = 1000  # photos (train + val) under which choices use k-fold CV
VIEWS = ("orig", "flip")
RESERVE = 0.04  # of the budget, kept for saving the model, calibration and the report
HIGHER_RES = 1.2  # input size factor of the higher-resolution candidate


class _OverBudget(Exception):
    """Raised from an extraction's progress callback past the hard limit."""


@dataclass
class Candidate:
    """A scored candidate: its leaderboard entry and what the run needs to rebuild it."""

    entry: Entry
    sources: tuple[SourceKey, ...]
    fit: LinearFit | None = None  # None for averaged-probability ensembles
    val_probs: np.ndarray | None = None

    @property
    def single_model(self) -> bool:
        return len(self.sources) == 1 and self.fit is not None


@dataclass
class SearchResult:
    """The leaderboard and the chosen candidate."""

    leaderboard: Leaderboard
    best: Candidate
    candidates: list[Candidate] = field(default_factory=list)
    skipped: SkipLog = field(default_factory=SkipLog)

    @property
    def source(self) -> SourceKey:
        """The backbone (and input size) the saved model needs."""
        return self.best.sources[0]

    @property
    def tta(self) -> bool:
        """Whether the chosen model predicts with flip averaging."""
        return self.best.entry.tta

    def head(self) -> Head:
        """The chosen linear head as the library's :class:`Head` (single-backbone winners only)."""
        if not self.best.single_model or self.best.fit is None:
            raise ConfigError(f"the chosen candidate {self.best.entry.name!r} is an ensemble of {len(self.best.sources)} backbones")
        return to_head(self.best.fit)


@dataclass
class _State:
    train_set: ImageSet
    val_set: ImageSet
    budget: float
    seed: int
    rates: Rates
    small: bool
    start: float
    clock: Callable[[], float]
    board: Leaderboard
    train_digests: list[str | None]
    val_digests: list[str | None]
    feats: dict[SourceKey, tuple[SetFeatures, SetFeatures]] = field(default_factory=dict)
    candidates: list[Candidate] = field(default_factory=list)
    skipped: SkipLog = field(default_factory=SkipLog)
    progress: Callable[[str], None] | None = None

    def elapsed(self) -> float:
        return self.clock() - self.start

    def fits(self, estimate: float) -> bool:
        return self.elapsed() + estimate <= self.budget * (1 - RESERVE)


def search(
    train_set: ImageSet,
    val_set: ImageSet,
    budget_seconds: float,
    seed: int = 0,
    *,
    backbones: Sequence[str] | None = None,
    engine: str = "auto",
    device: str = "cpu",
    allow_ensembles: bool = True,
    allow_tta: bool = True,
    ensemble_margin: float = 0.03,
    rates: Rates | None = None,
    clock: Callable[[], float] = time.perf_counter,
    progress: Callable[[str], None] | None = None,
) -> SearchResult:
    """Try candidates in order of value per second within ``budget_seconds``; keep the best by validation.

    Args:
        train_set: Labeled training photos.
        val_set: Labeled validation photos (same classes).
        budget_seconds: Wall-clock budget of the whole search (the first lite0 head always runs).
        seed: Seeds the CV folds.
        backbones: Backbones to consider, in order; default: lite0, lite1, lite2 and any
            cached timm backbones (see :func:`imagefit.models.hub.local_backbones`).
        engine: Inference engine for extraction (as ``imagefit.train``).
        device: ``cpu`` or ``cuda``.
        allow_ensembles: Consider multi-backbone candidates (need a multi-backbone model format).
        allow_tta: Consider flip-averaged prediction (the saved model must then predict with TTA).
        ensemble_margin: A multi-backbone winner must beat the best single model's score by this fraction.
        rates: Measured speeds (default: this machine's, persisted in the cache).
        clock: Time source (tests pass a fake one).
        progress: Called with one line per candidate.

    Returns:
        :class:`SearchResult`; ``result.leaderboard.to_dict()`` / ``write_csv()`` record every candidate.
    """
    start = clock()
    small = len(train_set) + len(val_set) < SMALL_SET
    board = Leaderboard(budget_seconds, seed, f"{DEFAULT_FOLDS}-fold CV on train" if small else "validation log loss")
    st = _State(
        train_set, val_set, float(budget_seconds), seed, rates or Rates(engine), small, start, clock, board,
        file_digests(train_set.paths), file_digests(val_set.paths), progress=progress,
    )  # fmt: skip
    names = list(backbones) if backbones is not None else default_backbones()
    for i, name in enumerate(names):
        _run_source(st, SourceKey(name), engine, device, allow_tta, required=i == 0)
    if allow_ensembles and len(st.feats) > 1:
        _ensembles(st, allow_tta)
    singles = [c for c in st.candidates if c.single_model]
    if singles:
        top = min(singles, key=_rank_key)
        bigger = int(round(SourceKeyNative.size(top.sources[0]) * HIGHER_RES / 16) * 16)
        _run_source(st, SourceKey(top.sources[0].backbone, bigger), engine, device, allow_tta, required=False)
    best = _choose(st, ensemble_margin)
    board.best = best.entry.name
    board.elapsed_s = st.elapsed()
    return SearchResult(board, best, st.candidates, st.skipped)


class SourceKeyNative:
    """Input sizes of a source key (its own, else the backbone's)."""

    @staticmethod
    def size(key: SourceKey) -> int:
        from ..models.registry import get_spec

        return key.img_size or get_spec(key.backbone).input_size


def default_backbones() -> list[str]:
    """lite0, lite1, lite2 (when their weights are installed), then cached timm backbones."""
    from ..models.hub import local_backbones

    return local_backbones()


def _rank_key(c: Candidate) -> tuple[float, float]:
    return (c.entry.score, c.entry.seconds)


def _extract_estimate(st: _State, src: FeatureSource) -> tuple[float, int]:
    n_views = (src.missing(st.train_digests, VIEWS) + src.missing(st.val_digests, VIEWS)) * len(VIEWS)
    return st.rates.extraction(src.key.backbone, src.pre.input_size, n_views), n_views


def _fit_estimate(st: _State, n_features: int, fits: int) -> float:
    n_classes = len(st.train_set.classes)
    per_fit = 1 + (DEFAULT_FOLDS if st.small else 0)
    return st.rates.head_fit(
        len(st.train_set) * len(VIEWS), n_features, 1 if n_classes == 2 else n_classes, fits * per_fit * len(DEFAULT_CS)
    )


def _run_source(st: _State, key: SourceKey, engine: str, device: str, allow_tta: bool, *, required: bool) -> None:
    """Extract one backbone's features (if the budget allows) and score its heads."""
    t0 = st.clock()
    try:
        src = FeatureSource(key, engine=engine, device=device)
        est_x, n_views = _extract_estimate(st, src)
    except Exception as exc:  # a backbone that cannot be built is a skipped candidate, not a failed search
        st.board.add(Entry(key.label, "failed", key.label, note=f"{type(exc).__name__}: {exc}"))
        return
    est = est_x + _fit_estimate(st, src.spec.num_features, 2)
    if not required and not st.fits(est):
        st.board.add(Entry(key.label, "skipped", key.label, estimate_s=est, elapsed_s=st.elapsed(), note="over budget by estimate"))
        return
    hard = st.start + st.budget * HARD_LIMIT

    def guard(_n: int) -> None:
        if not required and st.clock() > hard:
            raise _OverBudget

    try:
        tr = src.features(st.train_set, VIEWS, st.skipped, guard)
        va = src.features(st.val_set, VIEWS, SkipLog() if st.skipped else st.skipped, guard)
    except _OverBudget:
        st.board.add(
            Entry(
                key.label,
                "skipped",
                key.label,
                estimate_s=est,
                seconds=st.clock() - t0,
                elapsed_s=st.elapsed(),
                note="stopped at the hard limit",
            )
        )
        return
    st.rates.learn_extraction(key.backbone, src.pre.input_size, n_views, src.seconds)
    st.feats[key] = (tr, va)
    _score_heads(st, (key,), tr.values, va.values, allow_tta, est, t0)


def _score_heads(
    st: _State, keys: tuple[SourceKey, ...], xtr: np.ndarray, xva: np.ndarray, allow_tta: bool, estimate: float, t0: float
) -> None:
    """Fit heads on photos alone and photos + mirror images; score each without and with TTA."""
    tr, va = st.feats[keys[0]]
    label = "+".join(k.label for k in keys)
    n_classes = len(st.train_set.classes)
    for train_views in ("orig", "orig+flip"):
        v = 1 if train_views == "orig" else 2
        f0 = st.clock()
        val = None if st.small else (xva[:, :1], va.labels)
        fit = fit_linear(xtr[:, :v], tr.labels, n_classes, seed=st.seed, val=val)
        fit_s = st.clock() - f0
        out = 1 if n_classes == 2 else n_classes
        st.rates.learn_fit(len(tr.labels) * v, xtr.shape[-1], out, len(fit.cv_scores) * (1 + (DEFAULT_FOLDS if st.small else 0)), fit_s)
        for tta in (False, True) if allow_tta else (False,):
            probs = fit.probs(xva if tta else xva[:, :1])
            val_ll = log_loss(probs, va.labels)
            name = f"{label} {train_views}{' tta' if tta else ''}"
            entry = Entry(
                name, "ok", label, train_views, tta, len(keys) == 1, fit.c, fit.cv_log_loss if st.small else val_ll,
                fit.cv_log_loss, val_ll, float((probs.argmax(1) == va.labels).mean()), estimate, st.clock() - t0, st.elapsed(),
            )  # fmt: skip
            st.board.add(entry)
            st.candidates.append(Candidate(entry, keys, fit, probs))
            if st.progress:
                st.progress(f"{name}: val log loss {val_ll:.4f}, accuracy {entry.val_accuracy:.4f} ({entry.elapsed_s:.0f} s)")
        estimate = 0.0  # the estimate covered both fits; report it once


def _ensembles(st: _State, allow_tta: bool) -> None:
    """Concatenated features of every extracted backbone -> one head; and averaged probabilities."""
    keys = tuple(st.feats)
    n_features = sum(st.feats[k][0].values.shape[-1] for k in keys)
    est = _fit_estimate(st, n_features, 2)
    label = "+".join(k.label for k in keys)
    if not _aligned(st, keys):
        st.board.add(Entry(f"{label} concat", "skipped", label, single_model=False, note="backbones read different photos"))
        return
    if st.fits(est):
        xtr = np.concatenate([st.feats[k][0].values for k in keys], axis=-1)
        xva = np.concatenate([st.feats[k][1].values for k in keys], axis=-1)
        _score_heads(st, keys, xtr, xva, allow_tta, est, st.clock())
    else:
        st.board.add(Entry(f"{label} concat", "skipped", label, single_model=False, estimate_s=est, note="over budget by estimate"))
    if st.small:
        return  # averaged probabilities have no out-of-fold score without refitting every member
    labels = st.feats[keys[0]][1].labels
    for tta in (False, True) if allow_tta else (False,):
        members = [min((c for c in st.candidates if c.sources == (k,) and c.entry.tta == tta), key=_rank_key) for k in keys]
        probs = np.mean([m.val_probs for m in members if m.val_probs is not None], axis=0)
        ll = log_loss(probs, labels)
        e = Entry(f"{label} avg{' tta' if tta else ''}", "ok", label, "orig+flip", tta, False, math.nan, ll, math.nan, ll,
                  float((probs.argmax(1) == labels).mean()), 0.0, 0.0, st.elapsed(), note="members: " + ", ".join(m.entry.name for m in members))  # fmt: skip
        st.board.add(e)
        st.candidates.append(Candidate(e, keys, None, probs))


def _aligned(st: _State, keys: tuple[SourceKey, ...]) -> bool:
    first = st.feats[keys[0]]
    return all(
        np.array_equal(st.feats[k][0].indices, first[0].indices) and np.array_equal(st.feats[k][1].indices, first[1].indices) for k in keys
    )


def _choose(st: _State, margin: float) -> Candidate:
    """The best single-backbone candidate, unless a multi-backbone one beats it by ``margin``."""
    ok = [c for c in st.candidates if not math.isnan(c.entry.score)]
    if not ok:
        raise ConfigError("the search produced no scored candidate")
    single = [c for c in ok if c.single_model]
    best_any = min(ok, key=_rank_key)
    if not single:
        return best_any
    best_single = min(single, key=_rank_key)
    if best_any.entry.score < best_single.entry.score * (1 - margin):
        return best_any
    return best_single


__all__ = ["SMALL_SET", "Candidate", "SearchResult", "default_backbones", "search"]
