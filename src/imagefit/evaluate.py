"""Classification metrics, with the majority-class (dummy) baseline beside them."""

from __future__ import annotations

from typing import Any

import numpy as np

EPS = 1e-15


def compute_metrics(
    y_true: np.ndarray,
    probs: np.ndarray,
    classes: list[str],
    train_counts: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Accuracy, log loss, confusion matrix, per-class P/R/F1, ROC AUC (2 classes), baseline.

    Args:
        y_true: Integer labels, shape ``[N]``.
        probs: Probabilities, shape ``[N, C]``.
        classes: Class names, length ``C``.
        train_counts: Images per class in training; the dummy baseline predicts
            the training majority class with the training priors (as
            scikit-learn's ``DummyClassifier(strategy="prior")``). Without it,
            the evaluated set's own distribution is used.

    Returns:
        A JSON-ready dict.
    """
    # Imported here: sklearn.metrics pulls in scipy.stats and pandas (1-3 s), which `imagefit.load`,
    # `predict` and `serve` would otherwise pay at start-up without ever computing a metric.
    from sklearn.metrics import accuracy_score, confusion_matrix, log_loss, precision_recall_fscore_support, roc_auc_score

    y_true = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    n_classes = len(classes)
    labels = list(range(n_classes))
    if len(y_true) == 0:
        return {"n_images": 0, "accuracy": float("nan"), "log_loss": float("nan")}
    pred = probs.argmax(1)
    p, r, f1, support = precision_recall_fscore_support(y_true, pred, labels=labels, zero_division=0)
    clipped = np.clip(probs, EPS, 1 - EPS)
    clipped /= clipped.sum(1, keepdims=True)
    out: dict[str, Any] = {
        "n_images": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, pred)),
        "log_loss": float(log_loss(y_true, clipped, labels=labels)),
        "confusion_matrix": confusion_matrix(y_true, pred, labels=labels).tolist(),
        "per_class": {
            c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f1[i]), "support": int(support[i])}
            for i, c in enumerate(classes)
        },
    }
    if n_classes == 2 and len(set(y_true.tolist())) == 2:
        out["roc_auc"] = float(roc_auc_score(y_true, probs[:, 1]))
    if train_counts:
        prior = np.array([train_counts.get(c, 0) for c in classes], dtype=np.float64)
    else:
        prior = np.bincount(y_true, minlength=n_classes).astype(np.float64)
    prior = prior / prior.sum()
    majority = int(prior.argmax())
    base_probs = np.clip(np.tile(prior, (len(y_true), 1)), EPS, 1 - EPS)
    out["baseline"] = {
        "strategy": f"always '{classes[majority]}' with the training priors",
        "accuracy": float((y_true == majority).mean()),
        "log_loss": float(log_loss(y_true, base_probs / base_probs.sum(1, keepdims=True), labels=labels)),
    }
    return out


def calibrated_metrics(
    y_true: np.ndarray,
    probs_uncalibrated: np.ndarray,
    probs: np.ndarray,
    temperature: float,
    classes: list[str],
    train_counts: dict[str, int] | None = None,
) -> dict[str, Any]:
    """:func:`compute_metrics` of the calibrated probabilities, plus ``ece`` and ``calibration``.

    ``calibration`` holds the temperature and log loss / ECE before (temperature 1)
    and after scaling. Used by training (validation) and by ``Model.evaluate``.
    """
    from .calibrate import expected_calibration_error, summary_from_probs

    metrics = compute_metrics(y_true, probs, classes, train_counts)
    metrics["ece"] = expected_calibration_error(probs, y_true)
    metrics["calibration"] = summary_from_probs(probs_uncalibrated, probs, y_true, temperature)
    return metrics


def summary_line(metrics: dict[str, Any]) -> str:
    """One human line: accuracy and log loss next to the baseline's."""
    b = metrics.get("baseline", {})
    text = f"accuracy {metrics['accuracy']:.4f}  log loss {metrics['log_loss']:.4f}"
    if "roc_auc" in metrics:
        text += f"  ROC AUC {metrics['roc_auc']:.4f}"
    if b:
        text += f"  (baseline: accuracy {b['accuracy']:.4f}, log loss {b['log_loss']:.4f})"
    return text
