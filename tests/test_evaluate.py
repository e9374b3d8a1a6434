"""compute_metrics on small examples worked out by hand, and the dummy baseline."""

from __future__ import annotations

import math

import numpy as np
import pytest

from imagefit.evaluate import compute_metrics, summary_line

Y = np.array([0, 0, 1, 1])
P = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.3, 0.7]])


def test_binary_known_example() -> None:
    m = compute_metrics(Y, P, ["cat", "dog"])
    assert m["n_images"] == 4
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["log_loss"] == pytest.approx(-(math.log(0.9) + math.log(0.4) + math.log(0.8) + math.log(0.7)) / 4)
    assert m["confusion_matrix"] == [[1, 1], [0, 2]]
    assert m["per_class"]["cat"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    assert m["per_class"]["dog"]["precision"] == pytest.approx(2 / 3)
    assert m["per_class"]["dog"]["recall"] == 1.0
    assert m["roc_auc"] == pytest.approx(1.0)  # every dog scores above every cat


def test_roc_auc_partial() -> None:
    p = np.array([[0.2, 0.8], [0.6, 0.4], [0.3, 0.7], [0.9, 0.1]])
    m = compute_metrics(Y, p, ["a", "b"])
    # positives 0.7, 0.1 vs negatives 0.8, 0.4: pairs won (0.7>0.4) = 1 of 4.
    assert m["roc_auc"] == pytest.approx(0.25)


def test_baseline_with_training_priors() -> None:
    m = compute_metrics(Y, P, ["cat", "dog"], train_counts={"cat": 30, "dog": 10})
    b = m["baseline"]
    assert "'cat'" in b["strategy"]
    assert b["accuracy"] == pytest.approx(0.5)
    assert b["log_loss"] == pytest.approx(-(2 * math.log(0.75) + 2 * math.log(0.25)) / 4)


def test_baseline_without_training_counts_uses_evaluated_set() -> None:
    y = np.array([0, 1, 1, 1])
    p = np.tile([0.5, 0.5], (4, 1))
    b = compute_metrics(y, p, ["a", "b"])["baseline"]
    assert "'b'" in b["strategy"]
    assert b["accuracy"] == pytest.approx(0.75)
    assert b["log_loss"] == pytest.approx(-(math.log(0.25) + 3 * math.log(0.75)) / 4)


def test_good_model_beats_baseline() -> None:
    m = compute_metrics(Y, P, ["cat", "dog"], train_counts={"cat": 5, "dog": 5})
    assert m["log_loss"] < m["baseline"]["log_loss"] == pytest.approx(math.log(2))


def test_multiclass() -> None:
    y = np.array([0, 1, 2, 2, 1])
    p = np.array(
        [
            [0.7, 0.2, 0.1],
            [0.1, 0.8, 0.1],
            [0.2, 0.2, 0.6],
            [0.5, 0.1, 0.4],
            [0.3, 0.3, 0.4],
        ]
    )
    m = compute_metrics(y, p, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(0.6)
    assert m["confusion_matrix"] == [[1, 0, 0], [0, 1, 1], [1, 0, 1]]
    assert "roc_auc" not in m
    expected_ll = -np.mean(np.log([0.7, 0.8, 0.6, 0.4, 0.3]))
    assert m["log_loss"] == pytest.approx(expected_ll)
    assert set(m["per_class"]) == {"a", "b", "c"}


def test_class_missing_from_labels() -> None:
    # Only one class present: no ROC AUC, log loss still defined over all classes.
    y = np.array([1, 1])
    p = np.array([[0.2, 0.8], [0.4, 0.6]])
    m = compute_metrics(y, p, ["a", "b"])
    assert "roc_auc" not in m
    assert m["accuracy"] == 1.0
    assert m["per_class"]["a"]["support"] == 0
    assert m["log_loss"] == pytest.approx(-(math.log(0.8) + math.log(0.6)) / 2)


def test_probabilities_of_zero_are_clipped() -> None:
    m = compute_metrics(np.array([0, 1]), np.array([[0.0, 1.0], [1.0, 0.0]]), ["a", "b"])
    assert math.isfinite(m["log_loss"]) and m["log_loss"] > 10


def test_empty() -> None:
    m = compute_metrics(np.array([], dtype=int), np.zeros((0, 2)), ["a", "b"])
    assert m["n_images"] == 0 and math.isnan(m["accuracy"]) and math.isnan(m["log_loss"])


def test_json_ready() -> None:
    import json

    m = compute_metrics(Y, P, ["cat", "dog"], {"cat": 2, "dog": 2})
    assert json.loads(json.dumps(m)) == m


def test_summary_line() -> None:
    m = compute_metrics(Y, P, ["cat", "dog"], {"cat": 2, "dog": 2})
    line = summary_line(m)
    assert line.startswith("accuracy 0.7500  log loss ")
    assert "ROC AUC 1.0000" in line and "(baseline: accuracy 0.5000, log loss 0.6931)" in line
    assert "\n" not in line
