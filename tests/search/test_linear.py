"""The cross-validated linear head on tiny synthetic features."""

import numpy as np
import pytest
import torch

from imagefit.errors import DataError
from imagefit.models.heads import probabilities
from imagefit.search.linear import fit_linear, photo_folds, score, to_head


def blobs(n: int, k: int, f: int = 16, views: int = 1, seed: int = 0, spread: float = 1.0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, f)) * 2.0
    y = np.arange(n) % k
    x = centers[y][:, None, :] + spread * rng.normal(size=(n, views, f)) + 5.0  # offset: standardization matters
    return x.astype(np.float32), y


@pytest.mark.parametrize("k", [2, 3])
def test_head_reproduces_fit_probabilities(k):
    x, y = blobs(60, k)
    fit = fit_linear(x, y, k, folds=3, cs=(0.01, 1.0))
    head = to_head(fit)
    assert head.out_features == (1 if k == 2 else k)
    with torch.inference_mode():
        p_head = probabilities(head(torch.from_numpy(x[:, 0]))).numpy()
    np.testing.assert_allclose(p_head, fit.probs(x[:, 0]), atol=1e-4)
    assert score(fit, x, y)["accuracy"] > 0.9


def test_cv_prefers_strong_regularization_on_noise():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(80, 1, 40)).astype(np.float32)
    y = np.arange(80) % 2
    fit = fit_linear(x, y, 2, folds=4, cs=(1e-3, 10.0))
    assert fit.c == 1e-3  # labels are noise: fitting them hurts the out-of-fold log loss
    assert set(fit.cv_scores) == {1e-3, 10.0}
    assert fit.cv_scores[1e-3] < fit.cv_scores[10.0]


def test_choose_on_validation_and_views():
    x, y = blobs(60, 3, views=2, spread=3.0)
    xv, yv = blobs(30, 3, views=2, seed=5, spread=3.0)
    fit = fit_linear(x, y, 3, val=(xv[:, :1], yv), cs=(1e-3, 0.1))
    assert fit.cv_log_loss == pytest.approx(score(fit, xv[:, :1], yv)["log_loss"], rel=1e-5)
    assert fit.cv_log_loss == min(fit.cv_scores.values())


def test_same_seed_same_head_other_seed_other_folds():
    x, y = blobs(40, 2, spread=2.0)
    a = fit_linear(x, y, 2, seed=3, folds=3, cs=(0.01, 0.1))
    b = fit_linear(x, y, 2, seed=3, folds=3, cs=(0.01, 0.1))
    np.testing.assert_array_equal(a.weight, b.weight)
    assert a.cv_scores == b.cv_scores
    folds3 = [te.tolist() for _, te in photo_folds(y, 3, 3)]
    folds4 = [te.tolist() for _, te in photo_folds(y, 3, 4)]
    assert folds3 != folds4


def test_views_of_one_photo_stay_in_one_fold():
    y = np.arange(20) % 2
    for tr, te in photo_folds(y, 5, 0):
        assert not set(tr) & set(te)


def test_bad_inputs():
    x, y = blobs(10, 2)
    with pytest.raises(DataError):
        fit_linear(x, y[:5], 2)
    with pytest.raises(DataError):
        fit_linear(x, np.zeros(10, np.int64), 2)


def test_validation_grid_stops_two_points_past_the_best():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(80, 1, 40)).astype(np.float32)
    y = np.arange(80) % 2
    xv = rng.normal(size=(40, 1, 40)).astype(np.float32)
    yv = np.arange(40) % 2
    cs = (1e-4, 1e-2, 1.0, 100.0, 1e4)
    fit = fit_linear(x, y, 2, val=(xv, yv), cs=cs)
    # Noise labels: the strongest penalty is best on validation, so every later point is worse and
    # the grid stops after two of them instead of fitting all five.
    assert list(fit.cv_scores) == [1e-4, 1e-2, 1.0]
    assert fit.c == 1e-4
    full = fit_linear(x, y, 2, val=(xv, yv), cs=cs[:3])
    assert full.cv_scores == fit.cv_scores
