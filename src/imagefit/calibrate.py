"""Probability calibration: temperature scaling, expected calibration error, clipping.

Temperature scaling (Guo et al., 2017) divides the logits by one number ``T``
fitted on validation data to minimise the negative log likelihood. It never
changes which class wins, so accuracy is untouched; only the confidence moves.
A network trained to a low training loss is usually over-confident (``T > 1``).

The fit searches ``log T`` without scipy, deterministically: a scan of 81
points between the bounds, then a golden-section search between the best
point's neighbours. The NLL alone is unimodal in ``log T`` (convex in
``1/T``); the scan keeps the search global once the prior below is added.

A weak prior keeps T near 1 unless the data say otherwise: the fit maximises
``N * log-likelihood - (log T)^2 / (2 * 0.5^2)`` (``log T ~ Normal(0, 0.5)``,
i.e. T within [0.37, 2.7] a priori). Without it, a small validation set with
no mistake (the bundled sample: 24 of 24 right) is separable, and the NLL
falls forever as ``T -> 0``: the model would claim a certainty that 24 photos
cannot support. On a large validation set the prior barely moves T or the
log loss (figures for cats_and_dogs_filtered in BENCHMARKS.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import invalid

EPS = 1e-15
N_BINS = 15
# T outside this range means the validation set is too small or separable:
# the fit would only memorise it, so the search stops at the edge.
T_MIN, T_MAX = 0.05, 20.0
PRIOR_SD = 0.5  # of log T; see the module docstring


def _as_logits(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim == 1:
        z = z[:, None]
    if z.ndim != 2:
        raise invalid("logits shape", z.shape, "[N] or [N, C]")
    return z


def log_probs(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Log probabilities ``[N, num_classes]`` of logits divided by ``temperature``.

    One logit per row means a binary sigmoid head (as :func:`imagefit.models.heads.probabilities`):
    the columns are ``[log(1 - p), log p]``.

    Args:
        logits: ``[N]``, ``[N, 1]`` (sigmoid) or ``[N, C]`` (softmax) logits.
        temperature: Positive divisor of the logits.
    """
    z = _as_logits(logits) / float(temperature)
    if z.shape[1] == 1:
        s = z[:, 0]
        # log sigmoid(s) = -log(1 + e^-s), computed without overflow.
        return np.stack([-np.logaddexp(0.0, s), -np.logaddexp(0.0, -s)], axis=1)
    m = z.max(axis=1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=1, keepdims=True))


def scaled_probs(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Probabilities ``[N, num_classes]`` of temperature-scaled logits."""
    return np.exp(log_probs(logits, temperature))


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log likelihood of ``labels`` under temperature-scaled logits."""
    y = np.asarray(labels, dtype=np.int64)
    if len(y) == 0:
        return float("nan")
    lp = log_probs(logits, temperature)
    return float(-lp[np.arange(len(y)), y].mean())


def calibration_objective(logits: np.ndarray, labels: np.ndarray, temperature: float, prior_sd: float | None = PRIOR_SD) -> float:
    """What :func:`fit_temperature` minimises: mean NLL plus the prior's ``(log T)^2 / (2 sd^2 N)``."""
    y = np.asarray(labels, dtype=np.int64)
    if len(y) == 0:
        return float("nan")
    penalty = 0.0 if prior_sd is None else math.log(temperature) ** 2 / (2 * prior_sd**2 * len(y))
    return nll(logits, y, temperature) + penalty


def fit_temperature(
    logits: np.ndarray,
    labels: np.ndarray,
    *,
    t_min: float = T_MIN,
    t_max: float = T_MAX,
    tol: float = 1e-5,
    prior_sd: float | None = PRIOR_SD,
) -> float:
    """The temperature minimising the validation NLL under a weak prior that T is near 1.

    Args:
        logits: Validation logits, ``[N]``, ``[N, 1]`` or ``[N, C]``.
        labels: Integer labels ``[N]``.
        t_min: Smallest temperature considered.
        t_max: Largest temperature considered.
        tol: Stop when the bracket on ``log T`` is narrower than this.
        prior_sd: Standard deviation of the normal prior on ``log T`` (see
            the module docstring); None fits the plain maximum likelihood.

    Returns:
        ``T`` in ``[t_min, t_max]``; 1.0 for an empty set.

    Raises:
        ConfigError: if the bounds are not ``0 < t_min < 1 < t_max``.
    """
    if not 0 < t_min < 1 < t_max:
        raise invalid("temperature bounds", (t_min, t_max), "0 < t_min < 1 < t_max")
    y = np.asarray(labels, dtype=np.int64)
    if len(y) == 0:
        return 1.0
    if prior_sd is not None and not prior_sd > 0:
        raise invalid("prior_sd", prior_sd, "a positive number or None")
    z = _as_logits(logits)

    def f(u: float) -> float:
        return calibration_objective(z, y, math.exp(u), prior_sd)

    grid = np.linspace(math.log(t_min), math.log(t_max), 81)
    k = int(np.argmin([f(float(u)) for u in grid]))
    a, b = float(grid[max(k - 1, 0)]), float(grid[min(k + 1, len(grid) - 1)])
    g = (math.sqrt(5) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = f(c), f(d)
    while b - a > tol:
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = f(d)
    u = (a + b) / 2
    # Keep T = 1 unless scaling really helps: on a flat NLL the search can wander.
    return math.exp(u) if f(u) < f(0.0) else 1.0


def log_loss(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean log loss of probabilities, clipped to ``[1e-15, 1 - 1e-15]`` as Kaggle and scikit-learn do."""
    if len(labels) == 0:
        return float("nan")
    return float(photo_log_losses(probs, labels).mean())


def photo_log_losses(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each photo's log loss, clipped as :func:`log_loss` (whose mean it is): for paired comparisons of models."""
    y = np.asarray(labels, dtype=np.int64)
    p = np.clip(np.asarray(probs, dtype=np.float64), EPS, 1 - EPS)
    p = p / p.sum(axis=1, keepdims=True)
    return -np.log(p[np.arange(len(y)), y])


@dataclass
class ReliabilityBins:
    """Top-label confidence vs accuracy in equal-width confidence bins."""

    edges: np.ndarray  # [n_bins + 1]
    confidence: np.ndarray  # mean confidence per bin (nan when empty)
    accuracy: np.ndarray  # accuracy per bin (nan when empty)
    counts: np.ndarray  # photos per bin

    @property
    def ece(self) -> float:
        """Expected calibration error: count-weighted mean ``|accuracy - confidence|``."""
        n = self.counts.sum()
        if n == 0:
            return float("nan")
        used = self.counts > 0
        gap = np.abs(self.accuracy[used] - self.confidence[used])
        return float((gap * self.counts[used]).sum() / n)


def reliability(probs: np.ndarray, labels: np.ndarray, n_bins: int = N_BINS) -> ReliabilityBins:
    """Bin photos by top-label confidence (``n_bins`` equal-width bins on ``[0, 1]``).

    Args:
        probs: Probabilities ``[N, C]``.
        labels: Integer labels ``[N]``.
        n_bins: Number of bins (15 as in Guo et al.).
    """
    if n_bins < 1:
        raise invalid("n_bins", n_bins, "an integer >= 1")
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    conf_bins = np.full(n_bins, np.nan)
    acc_bins = np.full(n_bins, np.nan)
    counts = np.zeros(n_bins, dtype=np.int64)
    if len(y):
        conf = p.max(axis=1)
        correct = (p.argmax(axis=1) == y).astype(np.float64)
        # Right-closed bins (a, b], with 0 in the first: confidence 1.0 lands in the last bin.
        which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
        for k in range(n_bins):
            mask = which == k
            counts[k] = int(mask.sum())
            if counts[k]:
                conf_bins[k] = conf[mask].mean()
                acc_bins[k] = correct[mask].mean()
    return ReliabilityBins(edges, conf_bins, acc_bins, counts)


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = N_BINS) -> float:
    """Top-label ECE with ``n_bins`` equal-width bins (0 = perfectly calibrated)."""
    return reliability(probs, labels, n_bins).ece


def calibration_summary(logits: np.ndarray, labels: np.ndarray, temperature: float) -> dict[str, Any]:
    """Log loss and ECE before (``T = 1``) and after temperature scaling, JSON-ready."""
    before = scaled_probs(logits, 1.0)
    after = scaled_probs(logits, temperature)
    return summary_from_probs(before, after, labels, temperature)


def summary_from_probs(before: np.ndarray, after: np.ndarray, labels: np.ndarray, temperature: float) -> dict[str, Any]:
    """As :func:`calibration_summary`, from uncalibrated and calibrated probabilities."""
    return {
        "temperature": float(temperature),
        "log_loss_before": log_loss(before, labels),
        "log_loss_after": log_loss(after, labels),
        "ece_before": expected_calibration_error(before, labels),
        "ece_after": expected_calibration_error(after, labels),
        "n_bins": N_BINS,
    }


def clip_probabilities(probs: np.ndarray, low: float) -> np.ndarray:
    """Clip probabilities to ``[low, 1 - low]`` and renormalise each row.

    The Kaggle trick: one confident mistake costs ``-log(p)``, unbounded as
    ``p -> 0``; clipping caps that cost at ``-log(low)`` for a small loss on
    every confident right answer. A blunt tool: temperature scaling fixes the
    confidence of all predictions from data, clipping just cuts the tails.

    Args:
        probs: ``[N, C]`` probabilities.
        low: Floor in ``[0, 0.5)``; 0 leaves the probabilities unchanged.

    Raises:
        ConfigError: if ``low`` is outside ``[0, 0.5)``.
    """
    if not (isinstance(low, (int, float)) and 0 <= low < 0.5) or isinstance(low, bool):
        raise invalid("--clip", low, "a number in [0, 0.5), e.g. 0.005")
    p = np.asarray(probs, dtype=np.float64)
    if low == 0 or p.size == 0:
        return p
    p = np.clip(p, low, 1 - low)
    return p / p.sum(axis=1, keepdims=True)
