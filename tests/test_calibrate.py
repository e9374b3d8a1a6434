"""Temperature scaling, ECE, clipping, and their place in training and evaluation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from imagefit.calibrate import (
    calibration_objective,
    clip_probabilities,
    expected_calibration_error,
    fit_temperature,
    log_loss,
    log_probs,
    nll,
    reliability,
    scaled_probs,
)
from imagefit.errors import ConfigError
from imagefit.models.heads import probabilities


def _sample(logits: np.ndarray, temperature: float, seed: int = 0) -> np.ndarray:
    """Labels drawn from the probabilities of ``logits / temperature`` (so that T is the truth)."""
    p = scaled_probs(logits, temperature)
    rng = np.random.default_rng(seed)
    u = rng.random(len(p))[:, None]
    return (u > np.cumsum(p, axis=1)).sum(axis=1)


@pytest.mark.parametrize("n_classes,true_t", [(4, 2.5), (3, 0.6)])
def test_fit_temperature_recovers_the_true_temperature_softmax(n_classes: int, true_t: float) -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 3, (8000, n_classes))
    y = _sample(logits, true_t)
    t = fit_temperature(logits, y)
    assert t == pytest.approx(true_t, rel=0.06)


def test_fit_temperature_recovers_the_true_temperature_sigmoid() -> None:
    rng = np.random.default_rng(2)
    logits = rng.normal(0, 4, (8000, 1))
    y = _sample(logits, 1.8, seed=3)
    assert fit_temperature(logits, y) == pytest.approx(1.8, rel=0.06)


def test_fitted_temperature_is_the_nll_minimum() -> None:
    rng = np.random.default_rng(4)
    logits = rng.normal(0, 5, (500, 1))
    y = _sample(logits, 3.0, seed=5)
    t = fit_temperature(logits, y, prior_sd=None)
    best = nll(logits, y, t)
    for other in (1.0, t * 1.05, t / 1.05, t * 2, t / 2):
        assert best <= nll(logits, y, other) + 1e-12
    scipy_opt = pytest.importorskip("scipy.optimize")
    for prior in (None, 0.5):
        ref = scipy_opt.minimize_scalar(
            lambda u: calibration_objective(logits, y, math.exp(u), prior),
            bounds=(math.log(0.05), math.log(20)),
            method="bounded",
            options={"xatol": 1e-8},
        )
        assert fit_temperature(logits, y, prior_sd=prior) == pytest.approx(math.exp(ref.x), rel=1e-3)
    # On 500 photos the prior only nudges T towards 1.
    t_prior = fit_temperature(logits, y)
    assert 1 < t_prior < t and t_prior == pytest.approx(t, rel=0.05)


def test_fit_temperature_edge_cases() -> None:
    assert fit_temperature(np.zeros((0, 1)), np.zeros(0)) == 1.0
    # All-zero logits: every T gives the same NLL, so T stays 1.
    assert fit_temperature(np.zeros((10, 3)), np.arange(10) % 3) == 1.0
    # Separable data: without the prior the NLL falls forever as T -> 0 and the
    # search stops at the bound; the prior keeps 20 right answers from claiming certainty.
    logits, y = np.array([[3.0], [-3.0]] * 10), np.array([1, 0] * 10)
    assert fit_temperature(logits, y, prior_sd=None) == pytest.approx(0.05, rel=1e-3)
    t = fit_temperature(logits, y)
    assert 0.3 < t < 1
    assert scaled_probs(logits, t)[:, 1].max() < 0.9999
    with pytest.raises(ConfigError, match="received"):
        fit_temperature(logits, y, prior_sd=0.0)
    with pytest.raises(ConfigError, match="received"):
        fit_temperature(np.zeros((2, 2)), np.zeros(2), t_min=2.0)


def test_log_probs_match_the_heads_probabilities() -> None:
    rng = np.random.default_rng(6)
    for shape in ((20, 1), (20, 5)):
        z = rng.normal(0, 10, shape).astype(np.float32)
        for t in (0.5, 1.0, 3.0):
            want = probabilities(torch.from_numpy(z), t).numpy()
            assert np.allclose(np.exp(log_probs(z, t)), want, atol=1e-6)
    # Extreme logits stay finite.
    assert np.isfinite(log_probs(np.array([[1e4], [-1e4]]))).all()


def test_ece_hand_computed() -> None:
    probs = np.array([[0.9, 0.1]] * 10)
    y_right = np.zeros(10, dtype=int)
    assert expected_calibration_error(probs, np.r_[np.zeros(9), 1].astype(int)) == pytest.approx(0.0)
    assert expected_calibration_error(probs, y_right) == pytest.approx(0.1)
    # Two bins: 0.6 confident and right half the time (gap .1), 0.95 confident and always right (gap .05).
    probs2 = np.array([[0.6, 0.4]] * 4 + [[0.05, 0.95]] * 4)
    y2 = np.array([0, 0, 1, 1, 1, 1, 1, 1])
    assert expected_calibration_error(probs2, y2) == pytest.approx((4 * 0.1 + 4 * 0.05) / 8)
    rb = reliability(probs2, y2)
    assert rb.counts.sum() == 8 and len(rb.counts) == 15
    assert math.isnan(expected_calibration_error(np.zeros((0, 2)), np.zeros(0)))
    # Confidence exactly 1.0 lands in the last bin.
    assert reliability(np.array([[0.0, 1.0]]), np.array([1])).counts[-1] == 1


def test_temperature_scaling_lowers_ece_of_an_overconfident_model() -> None:
    rng = np.random.default_rng(7)
    logits = rng.normal(0, 3, (4000, 3))
    y = _sample(logits, 1.0, seed=8)
    overconfident = logits * 3  # what a model trained to a tiny training loss looks like
    t = fit_temperature(overconfident, y)
    assert t == pytest.approx(3.0, rel=0.1)
    before = expected_calibration_error(scaled_probs(overconfident), y)
    after = expected_calibration_error(scaled_probs(overconfident, t), y)
    assert after < before / 3
    assert log_loss(scaled_probs(overconfident, t), y) < log_loss(scaled_probs(overconfident), y)


def test_clip_probabilities() -> None:
    p = np.array([[1.0, 0.0], [0.3, 0.7], [0.001, 0.999]])
    c = clip_probabilities(p, 0.01)
    assert np.allclose(c, [[0.99, 0.01], [0.3, 0.7], [0.01, 0.99]])
    assert np.allclose(c.sum(1), 1)
    assert np.array_equal(clip_probabilities(p, 0), p)
    for bad in (-0.1, 0.5, 1.0, True):
        with pytest.raises(ConfigError, match="received"):
            clip_probabilities(p, bad)  # type: ignore[arg-type]


def test_training_fits_and_stores_the_temperature(trained_run: Path) -> None:
    meta = json.loads((trained_run / "imagefit.json").read_text())
    metrics = json.loads((trained_run / "metrics.json").read_text())
    cal = metrics["calibration"]
    assert set(cal) >= {"temperature", "log_loss_before", "log_loss_after", "ece_before", "ece_after"}
    assert meta["temperature"] == pytest.approx(cal["temperature"])
    assert 0.05 <= meta["temperature"] <= 20
    # T minimises the validation NLL, so it can only lower it (it is fitted on this set).
    assert cal["log_loss_after"] <= cal["log_loss_before"] + 1e-9
    # The headline figures are the calibrated model's.
    assert metrics["log_loss"] == pytest.approx(cal["log_loss_after"], abs=1e-9)
    assert metrics["ece"] == pytest.approx(cal["ece_after"])
    assert meta["metrics"]["val"]["calibration"] == cal


def test_model_evaluate_reports_calibrated_and_uncalibrated(trained_run: Path, sample_data: Path) -> None:
    import imagefit

    model = imagefit.load(trained_run)
    m = model.evaluate(sample_data / "val")
    cal = m["calibration"]
    assert cal["temperature"] == pytest.approx(model.temperature)
    assert m["log_loss"] == pytest.approx(cal["log_loss_after"], abs=1e-6)
    assert m["ece"] == pytest.approx(cal["ece_after"])
    # Same photos as training's validation set, so the same figures (up to float32 rounding).
    stored = json.loads((trained_run / "metrics.json").read_text())["calibration"]
    assert cal["log_loss_before"] == pytest.approx(stored["log_loss_before"], abs=1e-4)
    assert cal["log_loss_after"] == pytest.approx(stored["log_loss_after"], abs=1e-4)
    # predict returns the calibrated probabilities.
    preds = model.predict(sample_data / "val")
    ev = model.evaluate_details(sample_data / "val")
    order = {str(p): i for i, p in enumerate(ev.paths)}
    for r in preds.records[:5]:
        assert r["probabilities"][model.classes[1]] == pytest.approx(float(ev.probs[order[r["path"]], 1]), abs=1e-6)
