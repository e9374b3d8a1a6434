"""A linear head on cached features with its regularization chosen by cross-validation.

Multinomial (two classes: binary) logistic regression on standardized
features, scikit-learn's objective and ``C``, with ``C`` chosen by stratified
k-fold cross-validated log loss over a grid. The folds are scikit-learn's
``StratifiedKFold``; the fits are full-batch L-BFGS in torch, all folds of one
``C`` in one batched run, warm-started along the grid: on 3,068 photos x 2
views x 1,280 features x 10 classes, scikit-learn's ``LogisticRegressionCV``
took minutes on 2 busy cores (float64, one fold and one ``C`` at a time). The choice never looks at the validation or
test photos, so those stay free for choosing between candidates and for
calibration.

Each photo may come with several views (``orig``, ``flip``): every view is a
training sample, and all views of one photo fall in the same fold, so a
photo's mirror image never validates the photo itself.

The standardization is folded into the weights, so the result is a plain
linear layer on raw pooled features: :func:`to_head` builds the existing
:class:`~imagefit.models.heads.Head` (one logit for two classes), which
load/predict/serve/ONNX export already handle.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..calibrate import log_loss
from ..errors import DataError
from ..models.heads import Head

# A wide log grid: pooled ImageNet features of a few thousand photos usually want C near
# 0.01-0.1 (standardized inputs), tiny sets less, near-separable sets more.
DEFAULT_CS: tuple[float, ...] = (1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0)
DEFAULT_FOLDS = 5
PATIENCE = 2  # grid points past the best, each with a worse validation log loss, before the grid stops


@dataclass
class LinearFit:
    """A fitted linear head in raw feature space, and how its ``C`` was chosen."""

    weight: np.ndarray  # [out, F]: out = 1 for two classes (logit of class 1), else C
    bias: np.ndarray  # [out]
    n_classes: int
    c: float
    cv_log_loss: float
    cv_scores: dict[float, float] = field(default_factory=dict)  # C -> mean out-of-fold log loss

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Logits ``[N, out]`` of raw features ``[N, F]``."""
        return np.asarray(x, np.float64) @ self.weight.T.astype(np.float64) + self.bias

    def probs(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities ``[N, n_classes]``; ``x`` is ``[N, F]`` or ``[N, views, F]`` (views averaged)."""
        x = np.asarray(x)
        if x.ndim == 2:
            x = x[:, None, :]
        n, v, f = x.shape
        p = logits_to_probs(self.logits(x.reshape(n * v, f)))
        return p.reshape(n, v, -1).mean(1)


def logits_to_probs(z: np.ndarray) -> np.ndarray:
    """Sigmoid for one logit (as :func:`imagefit.models.heads.probabilities`), softmax otherwise."""
    z = np.asarray(z, np.float64)
    if z.shape[1] == 1:
        p1 = 1.0 / (1.0 + np.exp(-z[:, 0]))
        return np.stack([1.0 - p1, p1], axis=1)
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def photo_folds(labels: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified folds over photos, seeded (deterministic for a seed); fewer when a class is small."""
    from sklearn.model_selection import StratifiedKFold

    counts = np.bincount(labels)
    k = int(min(folds, counts[counts > 0].min()))
    if k < 2:
        raise DataError("cross-validation needs at least 2 photos of every class")
    skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return [(tr, te) for tr, te in skf.split(np.zeros(len(labels)), labels)]


def _expand(split: np.ndarray, views: int) -> np.ndarray:
    """Photo indices -> sample indices of the ``[photos * views]`` flattened array (row-major)."""
    return (split[:, None] * views + np.arange(views)[None, :]).reshape(-1)


def fit_linear(
    x: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    *,
    seed: int = 0,
    cs: tuple[float, ...] = DEFAULT_CS,
    folds: int = DEFAULT_FOLDS,
    max_iter: int = 60,
    val: tuple[np.ndarray, np.ndarray] | None = None,
) -> LinearFit:
    """Fit a logistic-regression head, ``C`` chosen by stratified k-fold CV log loss on these photos.

    Args:
        x: Features ``[N, F]`` or ``[N, views, F]`` (every view a sample, a photo's views kept in one fold).
        y: Labels ``[N]`` in ``[0, n_classes)``.
        n_classes: Number of classes (2 gives one logit, as :class:`Head` does).
        seed: Seeds the folds (the solver itself is deterministic).
        cs: Grid of inverse regularization strengths (scikit-learn's ``C``, on standardized features).
        folds: Number of folds (fewer when a class has fewer photos); 1 skips CV and uses ``cs[0]``.
        max_iter: L-BFGS iterations per grid point.
        val: Held-out ``(features, labels)`` to choose ``C`` on instead of k-fold CV (sets of 1,000
            photos or more: one fit per ``C`` instead of ``folds + 1``). Features ``[M, views, F]``
            are scored with their views' probabilities averaged.
    """
    x = np.asarray(x, np.float32)
    if x.ndim == 2:
        x = x[:, None, :]
    y = np.asarray(y, np.int64)
    n, v, f = x.shape
    if n != len(y) or n == 0:
        raise DataError(f"features and labels disagree: {n} photos, {len(y)} labels")
    if len(np.unique(y)) < 2:
        raise DataError("a head needs photos of at least two classes")
    flat = torch.from_numpy(x.reshape(n * v, f))
    mean = flat.double().mean(0)
    scale = flat.double().std(0, correction=0)
    scale[scale < 1e-8] = 1.0  # constant features (dead channels) stay as they are
    z = ((flat.double() - mean) / scale).float()
    yy = torch.from_numpy(np.repeat(y, v))
    scores: dict[float, float] = {}
    best_c = float(cs[0])
    if val is not None and len(cs) > 1:
        return _choose_on_val(z, yy, mean, scale, n_classes, cs, max_iter, val)
    if folds > 1 and len(cs) > 1:
        splits = photo_folds(y, folds, seed)
        train_masks = torch.zeros(len(splits), n * v, dtype=torch.bool)
        for m, (tr, _) in enumerate(splits):
            train_masks[m, torch.from_numpy(_expand(tr, v))] = True
        w = None
        for c in sorted(cs):  # weakest regularization last, each fit warm-started from the previous
            w = _solve(z, yy, train_masks, n_classes, c, max_iter, w)
            with torch.no_grad():
                logp = _log_probs(torch.einsum("sf,mfk->msk", z, w[0]) + w[1][:, None, :], n_classes)
                picked = logp.gather(2, yy.view(1, -1, 1).expand(len(splits), -1, 1))[..., 0]
                held = ~train_masks
                scores[float(c)] = float(-(picked * held).sum() / held.sum())
        best_c = min(scores, key=lambda c: (scores[c], c))
    w_all, b_all = _solve(z, yy, torch.ones(1, n * v, dtype=torch.bool), n_classes, best_c, max_iter * 2, None)
    coef = w_all[0].double().T / scale[None, :]  # [out, F] in raw feature space
    bias = b_all[0].double() - coef @ mean
    return LinearFit(coef.float().numpy(), bias.float().numpy(), n_classes, best_c, scores.get(best_c, float("nan")), scores)


def _choose_on_val(
    z: torch.Tensor,
    yy: torch.Tensor,
    mean: torch.Tensor,
    scale: torch.Tensor,
    n_classes: int,
    cs: tuple[float, ...],
    max_iter: int,
    val: tuple[np.ndarray, np.ndarray],
) -> LinearFit:
    """One fit per ``C`` on all training samples (warm-started along the grid), the best by validation log loss."""
    xv, yv = np.asarray(val[0], np.float32), np.asarray(val[1], np.int64)
    scores: dict[float, float] = {}
    best: LinearFit | None = None
    w = None
    ones = torch.ones(1, len(yy), dtype=torch.bool)
    worse = 0
    for c in sorted(cs):
        w = _solve(z, yy, ones, n_classes, c, max_iter, w)
        coef = w[0][0].double().T / scale[None, :]
        fit = LinearFit(coef.float().numpy(), (w[1][0].double() - coef @ mean).float().numpy(), n_classes, float(c), float("nan"))
        scores[float(c)] = score(fit, xv, yv)["log_loss"]
        if best is None or scores[float(c)] < scores[best.c]:
            best, worse = fit, 0
        else:
            worse += 1
        # Validation log loss is U-shaped in C: two rises in a row past the best end the grid, which
        # skips the weakest penalties, the slowest fits (most L-BFGS steps).
        if worse >= PATIENCE:
            break
    assert best is not None
    best.cv_scores = scores
    best.cv_log_loss = scores[best.c]
    return best


def _log_probs(logits: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Per-class log probabilities ``[..., n_classes]`` of one logit (sigmoid) or softmax logits."""
    if n_classes == 2:
        s = logits[..., 0]
        return torch.stack([F.logsigmoid(-s), F.logsigmoid(s)], dim=-1)
    return torch.log_softmax(logits, dim=-1)


def _solve(
    z: torch.Tensor,
    y: torch.Tensor,
    masks: torch.Tensor,
    n_classes: int,
    c: float,
    max_iter: int,
    init: tuple[torch.Tensor, torch.Tensor] | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """L2-regularized logistic regression for each row of ``masks`` at once (full-batch L-BFGS).

    Minimizes scikit-learn's objective divided by ``C * n``: mean log loss + ``||w||^2 / (2 C n)``,
    the intercept unpenalized. The models are independent; summing their objectives lets one
    L-BFGS run (one batched matrix product per step) fit all folds together.
    """
    out = 1 if n_classes == 2 else n_classes
    m, f = masks.shape[0], z.shape[1]
    w = init[0].clone() if init is not None else torch.zeros(m, f, out)
    b = init[1].clone() if init is not None else torch.zeros(m, out)
    w.requires_grad_(True)
    b.requires_grad_(True)
    weights = masks.float() / masks.sum(1, keepdim=True).float()  # [M, S]: each model's mean over its samples
    lam = 1.0 / (c * masks.sum(1).float())  # [M]
    opt = torch.optim.LBFGS(
        [w, b], lr=1.0, max_iter=max_iter, history_size=20, tolerance_grad=1e-6, tolerance_change=1e-9, line_search_fn="strong_wolfe"
    )
    idx = y.view(1, -1, 1).expand(m, -1, 1)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        logp = _log_probs(torch.einsum("sf,mfk->msk", z, w) + b[:, None, :], n_classes)
        nll = -(logp.gather(2, idx)[..., 0] * weights).sum()
        loss = nll + 0.5 * (lam * (w * w).sum((1, 2))).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


def to_head(fit: LinearFit) -> Head:
    """The fitted weights as the library's :class:`Head` (no hidden layer; dropout is inert at inference)."""
    head = Head(fit.weight.shape[1], fit.n_classes, hidden=0, dropout=0.0)
    linear = head.net[-1]
    assert isinstance(linear, torch.nn.Linear)
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(np.ascontiguousarray(fit.weight, np.float32)))
        linear.bias.copy_(torch.from_numpy(np.ascontiguousarray(fit.bias, np.float32)))
    return head.eval()


def score(fit: LinearFit, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Log loss and accuracy of ``fit`` on features ``[N, F]`` or ``[N, views, F]`` (views averaged)."""
    p = fit.probs(x)
    y = np.asarray(y, np.int64)
    return {"log_loss": log_loss(p, y), "accuracy": float((p.argmax(1) == y).mean()) if len(y) else float("nan")}


__all__ = ["DEFAULT_CS", "DEFAULT_FOLDS", "LinearFit", "fit_linear", "logits_to_probs", "photo_folds", "score", "to_head"]
