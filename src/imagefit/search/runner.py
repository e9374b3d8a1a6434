"""``search``: the most accurate model a time budget buys, chosen by validation log loss.

Candidates, in order of value per second (each estimated before it starts,
skipped if it would not fit):

1. a linear head (``C`` chosen on validation, or by k-fold CV for small sets)
   on cached lite0 features, trained on the photos alone and on photos +
   mirror images, each scored with and without flip averaging (TTA);
2. the same on the other backbones whose weights are present locally
   (lite1, lite2, cached timm models), cheapest first;
3. the composite of the backbones run so far (``lite0+lite1+lite2``: their
   features concatenated -> one linear head, see :mod:`imagefit.models.composite`),
   extracted as one backbone at the largest member's input size, so it is
   scored on exactly the features its saved model computes;
4. the best candidate's backbone at a higher input resolution;
5. (after this module, in :mod:`.tune`, on a GPU) the best single backbone fine-tuned.

Every candidate here is one backbone (a composite is one) with a linear head, so
the winner is saved as an ordinary run.

Selection: by validation log loss, with the one-standard-error rule (Hastie,
Tibshirani & Friedman, *Elements of Statistical Learning* 7.10): the candidate
cheapest to predict with (backbone cost x views) whose mean validation log loss
is within one standard error of the best's, the error taken over the per-photo
differences between the two (paired, as both score the same photos). A few
hundred validation photos cannot tell apart candidates closer than that, and
the cheaper one is faster everywhere the model goes. For sets under 1,000
photos the out-of-fold log loss of k-fold CV on the training photos, lowest
wins. Reproducible: folds and candidate order are fixed by the seed; what runs
is decided from estimates (:mod:`.budget`), not by racing the clock.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..calibrate import log_loss, photo_log_losses
from ..data.discover import ImageSet
from ..data.load import SkipLog
from ..errors import ConfigError
from ..models.composite import SEPARATOR
from ..models.heads import Head
from .budget import HARD_LIMIT, Rates, relative_cost
from .leaderboard import Entry, Leaderboard
from .linear import DEFAULT_CS, DEFAULT_FOLDS, LinearFit, fit_linear, to_head
from .sources import FeatureSource, SetFeatures, SourceKey, file_digests

Task = Callable[[str, int], contextlib.AbstractContextManager[Callable[[int], None]]]
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
    source: SourceKey
    fit: LinearFit
    val_probs: np.ndarray
    val_losses: np.ndarray | None = None  # per validation photo, for the one-standard-error rule

    @property
    def predict_cost(self) -> float:
        """Relative cost of predicting one photo: the backbone's at its input size, twice with TTA."""
        return relative_cost(self.source.backbone, self.source.img_size) * (2 if self.entry.tta else 1)


@dataclass
class SearchResult:
    """The leaderboard and the chosen candidate."""

    leaderboard: Leaderboard
    best: Candidate
    candidates: list[Candidate] = field(default_factory=list)
    skipped: SkipLog = field(default_factory=SkipLog)
    chosen: FeatureSource | None = None  # the chosen candidate's source: its backbone is the one to save

    @property
    def source(self) -> SourceKey:
        """The backbone (and input size) the saved model needs."""
        return self.best.source

    @property
    def tta(self) -> bool:
        """Whether the chosen model predicts with flip averaging."""
        return self.best.entry.tta

    def head(self) -> Head:
        """The chosen linear head as the library's :class:`Head`."""
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
    sources: dict[SourceKey, FeatureSource] = field(default_factory=dict)
    candidates: list[Candidate] = field(default_factory=list)
    skipped: SkipLog = field(default_factory=SkipLog)
    progress: Callable[[str], None] | None = None
    views: tuple[str, ...] = VIEWS
    task: Task | None = None

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
    allow_composite: bool = True,
    allow_tta: bool = True,
    higher_res: bool = True,
    views: Sequence[str] = VIEWS,
    rates: Rates | None = None,
    clock: Callable[[], float] = time.perf_counter,
    progress: Callable[[str], None] | None = None,
    task: Task | None = None,
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
        allow_composite: Consider the composite of the backbones extracted (see step 3 above).
        allow_tta: Consider flip-averaged prediction (the saved model must then predict with TTA).
        higher_res: Consider the best candidate's backbone at a higher input resolution (step 4 above).
        views: Views extracted per photo: ``("orig", "flip")`` (training on mirror images and TTA are
            candidates) or ``("orig",)`` (half the extraction; neither is).
        rates: Measured speeds (default: this machine's, persisted in the cache).
        clock: Time source (tests pass a fake one).
        progress: Called with one line per candidate.
        task: Progress bars of extractions: ``task(description, total)`` is a context manager
            yielding ``advance(n)`` (as :meth:`imagefit.ui.UI.task`).

    Returns:
        :class:`SearchResult`; ``result.leaderboard.to_dict()`` / ``write_csv()`` record every candidate.
    """
    start = clock()
    small = len(train_set) + len(val_set) < SMALL_SET
    board = Leaderboard(
        budget_seconds if math.isfinite(budget_seconds) else 0.0,
        seed,
        f"{DEFAULT_FOLDS}-fold CV on train" if small else "validation log loss, one-standard-error rule",
    )
    st = _State(
        train_set, val_set, float(budget_seconds), seed, rates or Rates(engine), small, start, clock, board,
        file_digests(train_set.paths), file_digests(val_set.paths), progress=progress, views=tuple(views), task=task,
    )  # fmt: skip
    allow_tta = allow_tta and "flip" in st.views
    names = list(backbones) if backbones is not None else default_backbones()
    for i, name in enumerate(names):
        _run_source(st, SourceKey(name), engine, device, allow_tta, required=i == 0)
    members = [k.backbone for k in st.feats if k.img_size is None]
    if allow_composite and len(members) > 1:
        _run_source(st, SourceKey(SEPARATOR.join(members)), engine, device, allow_tta, required=False)
    if higher_res and st.candidates:
        top = min(st.candidates, key=_rank_key).source
        bigger = int(round(SourceKeyNative.size(top) * HIGHER_RES / 16) * 16)
        _run_source(st, SourceKey(top.backbone, bigger), engine, device, allow_tta, required=False)
    best = _choose(st)
    board.best = best.entry.name
    board.elapsed_s = st.elapsed()
    return SearchResult(board, best, st.candidates, st.skipped, st.sources.get(best.source))


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
    n_views = (src.missing(st.train_digests, st.views) + src.missing(st.val_digests, st.views)) * len(st.views)
    return st.rates.extraction(src.key.backbone, src.pre.input_size, n_views), n_views


def _fit_estimate(st: _State, n_features: int, fits: int) -> float:
    n_classes = len(st.train_set.classes)
    per_fit = 1 + (DEFAULT_FOLDS if st.small else 0)
    return st.rates.head_fit(
        len(st.train_set) * len(st.views), n_features, 1 if n_classes == 2 else n_classes, fits * per_fit * len(DEFAULT_CS)
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
    est = est_x + _fit_estimate(st, src.spec.num_features, 2 if "flip" in st.views else 1)
    if not required and not st.fits(est):
        st.board.add(Entry(key.label, "skipped", key.label, estimate_s=est, elapsed_s=st.elapsed(), note="over budget by estimate"))
        return
    hard = st.start + st.budget * HARD_LIMIT

    def bar(what: str, n: int) -> contextlib.AbstractContextManager[Callable[[int], None]]:
        return st.task(f"features ({key.label}, {what})", n) if st.task else contextlib.nullcontext(lambda _n: None)

    def guarded(advance: Callable[[int], None]) -> Callable[[int], None]:
        def guard(n: int) -> None:
            advance(n)
            if not required and st.clock() > hard:
                raise _OverBudget

        return guard

    try:
        with bar("train", len(st.train_set)) as adv:
            tr = src.features(st.train_set, st.views, st.skipped, guarded(adv))
        with bar("val", len(st.val_set)) as adv:
            va = src.features(st.val_set, st.views, SkipLog() if st.skipped else st.skipped, guarded(adv))
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
    # What was really computed (not the estimate's count): cache hits must not make the machine look fast.
    st.rates.learn_extraction(key.backbone, src.pre.input_size, src.computed_views, src.seconds)
    st.feats[key] = (tr, va)
    st.sources[key] = src
    _score_heads(st, key, allow_tta, est, t0)


def _score_heads(st: _State, key: SourceKey, allow_tta: bool, estimate: float, t0: float) -> None:
    """Fit heads on photos alone and photos + mirror images; score each without and with TTA."""
    tr, va = st.feats[key]
    xtr, xva = tr.values, va.values
    label = key.label
    n_classes = len(st.train_set.classes)
    for train_views in ("orig", "orig+flip") if "flip" in st.views else ("orig",):
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
            losses = photo_log_losses(probs, va.labels)
            name = f"{label} {train_views}{' tta' if tta else ''}"
            entry = Entry(
                name, "ok", label, train_views, tta, fit.c, fit.cv_log_loss if st.small else val_ll,
                fit.cv_log_loss, val_ll, float((probs.argmax(1) == va.labels).mean()), estimate, st.clock() - t0, st.elapsed(),
            )  # fmt: skip
            st.board.add(entry)
            st.candidates.append(Candidate(entry, key, fit, probs, losses))
            if st.progress:
                st.progress(f"{name}: val log loss {val_ll:.4f}, accuracy {entry.val_accuracy:.4f} ({entry.elapsed_s:.0f} s)")
        estimate = 0.0  # the estimate covered both fits; report it once


def _choose(st: _State) -> Candidate:
    """The cheapest candidate within one standard error of the lowest score (CV sets: the lowest score)."""
    ok = [c for c in st.candidates if not math.isnan(c.entry.score)]
    if not ok:
        raise ConfigError("the search produced no scored candidate")
    best = min(ok, key=_rank_key)
    if st.small or best.val_losses is None:
        return best
    close = [c for c in ok if within_one_se(c.val_losses, best.val_losses)]
    chosen = min(close, key=lambda c: (c.predict_cost, c.entry.score, c.entry.seconds))
    if chosen is not best:
        chosen.entry.note = f"chosen: within one standard error of {best.entry.name}, cheaper to predict with"
    return chosen


def within_one_se(losses: np.ndarray | None, best: np.ndarray) -> bool:
    """Whether per-photo losses are, on average, within one standard error of ``best``'s (paired differences)."""
    if losses is None or losses.shape != best.shape or len(best) < 2:
        return losses is best
    d = np.asarray(losses, np.float64) - np.asarray(best, np.float64)
    return bool(d.mean() <= d.std(ddof=1) / math.sqrt(len(d)))


__all__ = ["SMALL_SET", "Candidate", "SearchResult", "default_backbones", "search"]
