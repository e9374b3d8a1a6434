"""``imagefit interpret``: where the model goes wrong, and which training labels look wrong.

* **Top losses** (validation): the photos with the highest log loss, i.e. the
  most confidently wrong ones.
* **Most confused pairs** (validation): off-diagonal cells of the confusion
  matrix, largest first.
* **Likely mislabeled training photos**: out-of-fold predictions of a
  logistic regression on the model's backbone features (k-fold, so every
  photo is scored by a classifier that never saw its label). A photo whose
  out-of-fold probability of its given label is low while another class is
  confident is flagged (the "confident learning" idea behind cleanlab).
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .config import RunConfig
from .data.load import SkipLog
from .data.prepare import prepare_data
from .errors import ArtifactError, ConfigError, invalid
from .model import Evaluation, Model
from .paths import atomic_write_text
from .ui import UI

if TYPE_CHECKING:
    from .report.html import Figures

EPS = 1e-15


@dataclass
class Interpretation:
    """What :func:`interpret` found and where it wrote it."""

    out: Path
    top_losses: list[dict[str, Any]]
    confused: list[dict[str, Any]]
    suspects: list[dict[str, Any]]
    metrics: dict[str, Any]
    oof: dict[str, Any] = field(default_factory=dict)
    report: Path | None = None
    files: list[Path] = field(default_factory=list)


def top_losses(ev: Evaluation, classes: Sequence[str], k: int = 16) -> list[dict[str, Any]]:
    """The ``k`` validation photos with the highest log loss (calibrated probabilities)."""
    y = ev.labels
    p_true = ev.probs[np.arange(len(y)), y]
    loss = -np.log(np.clip(p_true, EPS, 1.0))
    pred = ev.probs.argmax(1)
    order = np.argsort(-loss, kind="stable")[:k]
    return [
        {
            "path": str(ev.paths[i]),
            "label": classes[int(y[i])],
            "predicted": classes[int(pred[i])],
            "p_predicted": float(ev.probs[i, pred[i]]),
            "p_label": float(p_true[i]),
            "loss": float(loss[i]),
            "wrong": bool(pred[i] != y[i]),
        }
        for i in order
    ]


def confused_pairs(matrix: Sequence[Sequence[int]], classes: Sequence[str]) -> list[dict[str, Any]]:
    """Off-diagonal confusion-matrix cells with at least one photo, most frequent first."""
    cm = np.asarray(matrix, dtype=np.int64)
    rows = cm.sum(1)
    pairs = [
        {
            "label": classes[i],
            "predicted": classes[j],
            "count": int(cm[i, j]),
            "share_of_label": float(cm[i, j] / rows[i]) if rows[i] else 0.0,
        }
        for i in range(len(classes))
        for j in range(len(classes))
        if i != j and cm[i, j] > 0
    ]
    return sorted(pairs, key=lambda r: (-r["count"], -r["share_of_label"]))


def out_of_fold_probs(
    features: np.ndarray, labels: np.ndarray, n_classes: int, folds: int = 5, seed: int = 0, c: float = 0.1
) -> tuple[np.ndarray, int]:
    """Out-of-fold probabilities of a standardised logistic regression, ``[N, n_classes]``.

    Args:
        features: ``[N, F]`` backbone features.
        labels: ``[N]`` given labels.
        n_classes: Number of classes (columns of the result).
        folds: Wanted number of folds; reduced to the smallest class size.
        seed: Fold shuffling seed.
        c: Inverse L2 strength; strong regularisation keeps the probabilities
            from saturating on 1000+ feature dimensions.

    Returns:
        The probabilities and the number of folds used (0 when a class has
        fewer than 2 photos: nothing can be held out, all rows are NaN).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = np.asarray(labels, dtype=np.int64)
    present = np.bincount(y, minlength=n_classes)
    smallest = int(present[present > 0].min()) if len(y) else 0
    k = min(folds, smallest)
    out = np.full((len(y), n_classes), np.nan)
    if k < 2 or (present > 0).sum() < 2:
        return out, 0
    skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    for tr, te in skf.split(features, y):
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
        clf.fit(features[tr], y[tr])
        cols = clf.classes_
        p = clf.predict_proba(features[te])
        out[np.ix_(te, cols)] = p
        missing = np.setdiff1d(np.arange(n_classes), cols)
        out[np.ix_(te, missing)] = 0.0
    return out, k


def find_suspects(
    paths: Sequence[Path], labels: np.ndarray, oof: np.ndarray, classes: Sequence[str], low: float = 0.2, high: float = 0.7
) -> list[dict[str, Any]]:
    """Training photos whose out-of-fold probability of their label is below ``low`` while another class is above ``high``.

    Sorted most suspicious (lowest probability of the given label) first.
    """
    out = []
    for i, (y, row) in enumerate(zip(labels, oof)):
        if not np.isfinite(row).all():
            continue
        other = row.copy()
        other[y] = -1.0
        j = int(other.argmax())
        if row[y] < low and row[j] >= high:
            out.append(
                {
                    "path": str(paths[i]),
                    "label": classes[int(y)],
                    "suggested": classes[j],
                    "p_label": float(row[y]),
                    "p_suggested": float(row[j]),
                }
            )
    return sorted(out, key=lambda r: r["p_label"])


def _csv(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def interpret(
    run: str | Path,
    data: str | Path | None = None,
    *,
    val: str | Path | None = None,
    out: str | Path | None = None,
    top: int = 16,
    folds: int = 5,
    low: float = 0.2,
    high: float = 0.7,
    tta: bool | None = None,
    seed: int = 0,
    progress: bool = False,
) -> Interpretation:
    """Top losses, confused pairs and likely-mislabeled training photos of a run on its data.

    Training and validation sets are found as ``train`` finds them (a
    ``train/`` + ``validation/`` folder, ``val``, or the run's own
    ``val_split`` with its seed), so the validation photos are the ones the
    model never trained on.

    Args:
        run: Run folder.
        data: Labeled data (default: the data the run was trained on).
        val: Separate validation data.
        out: Output folder (default ``RUN/interpret-<time>``).
        top: How many top losses to list and show.
        folds: k of the k-fold out-of-fold predictions.
        low: Flag a training photo when its label's out-of-fold probability is below this...
        high: ...and another class's is at least this.
        tta: Average validation predictions with the mirror image (None: as the run was saved).
        seed: Fold shuffling seed.
        progress: Show progress bars.

    Raises:
        ConfigError: bad thresholds or counts.
        DataError: unusable data or classes unknown to the model.
    """
    from .report.html import REPORT_FILE, Figures, esc, page  # matplotlib: imported only when a report is made

    _check_options(low, high, top, folds)
    run = Path(run)
    model = Model.load(run)
    config, data, val = _recorded(model, data, val)
    train_set, val_set = prepare_data(data, val, config)
    train_set, val_set = train_set.with_classes(model.classes), val_set.with_classes(model.classes)
    classes = model.classes

    ev = model.evaluate_details(val_set, tta=tta, progress=progress)
    losses = top_losses(ev, classes, top)
    pairs = confused_pairs(ev.metrics["confusion_matrix"], classes)

    skipped = SkipLog()
    idx, values = model.features(train_set.paths, skipped, ui=UI(progress))
    y_train = np.asarray(train_set.labels)[idx]
    train_paths = [train_set.paths[int(i)] for i in idx]
    oof, k = out_of_fold_probs(values[:, 0], y_train, len(classes), folds, seed)
    suspects = find_suspects(train_paths, y_train, oof, classes, low, high)
    oof_info: dict[str, Any] = {"folds": k, "n_train": len(y_train), "n_flagged": len(suspects), "low": low, "high": high}
    if k:
        oof_info["accuracy"] = float((oof.argmax(1) == y_train).mean())

    out_dir = Path(out) if out else run / f"interpret-{time.strftime('%Y%m%d-%H%M%S')}"
    out_dir.mkdir(parents=True, exist_ok=True)
    files = _write_tables(out_dir, losses, pairs, suspects, train_paths, y_train, oof, classes)
    subtitle = (
        f"run <code>{esc(run)}</code> on <code>{esc(train_set.source)}</code> (training, {len(y_train)} photos) and "
        f"<code>{esc(val_set.source)}</code> (validation, {ev.metrics['n_images']} photos)."
    )
    figs = Figures(out_dir)
    body = _report_body(figs, ev.metrics, losses, pairs, suspects, oof_info, files)
    report = atomic_write_text(out_dir / REPORT_FILE, page(f"imagefit interpret {run.name}", subtitle, body))
    return Interpretation(out_dir, losses, pairs, suspects, ev.metrics, oof_info, report, files + figs.written)


def _check_options(low: float, high: float, top: int, folds: int) -> None:
    if not 0 < low < 1 or not 0 < high <= 1:
        raise invalid("--low/--high", (low, high), "probabilities in (0, 1)")
    if top < 1:
        raise invalid("--top", top, "an integer >= 1")
    if folds < 2:
        raise invalid("--folds", folds, "an integer >= 2")


def _recorded(model: Model, data: str | Path | None, val: str | Path | None) -> tuple[RunConfig, str | Path, str | Path | None]:
    """The run's settings and, unless given, its data: the split must be the one the run trained with."""
    record = model.record
    if record.config is None:
        raise ArtifactError(f"{model.path}: the run does not record its settings (config), needed to rebuild its validation split")
    if data is None:
        if record.data is None or not record.data.train:
            raise ConfigError(f"{model.path}: the run does not record its data; pass DATA")
        data, val = record.data.train, val if val is not None else record.data.val
    return record.config, data, val


def _write_tables(
    out_dir: Path,
    losses: list[dict[str, Any]],
    pairs: list[dict[str, Any]],
    suspects: list[dict[str, Any]],
    train_paths: list[Path],
    y_train: np.ndarray,
    oof: np.ndarray,
    classes: list[str],
) -> list[Path]:
    """The CSV files: top losses, confused pairs, suspected mislabels, every training photo's out-of-fold scores."""
    oof_rows = [
        {"path": str(p), "label": classes[int(yy)], **{f"oof_{c}": float(oof[i, j]) for j, c in enumerate(classes)}}
        for i, (p, yy) in enumerate(zip(train_paths, y_train))
    ]
    return [
        atomic_write_text(
            out_dir / "top_losses.csv", _csv(losses, ["path", "label", "predicted", "p_predicted", "p_label", "loss", "wrong"])
        ),
        atomic_write_text(out_dir / "confused_pairs.csv", _csv(pairs, ["label", "predicted", "count", "share_of_label"])),
        atomic_write_text(out_dir / "suspected_mislabels.csv", _csv(suspects, ["path", "label", "suggested", "p_label", "p_suggested"])),
        atomic_write_text(out_dir / "train_oof.csv", _csv(oof_rows, ["path", "label", *[f"oof_{c}" for c in classes]])),
    ]


def _report_body(
    figs: Figures,
    m: dict[str, Any],
    losses: list[dict[str, Any]],
    pairs: list[dict[str, Any]],
    suspects: list[dict[str, Any]],
    oof_info: dict[str, Any],
    files: list[Path],
) -> list[str]:
    """The interpret report's sections (HTML), its figures added to ``figs``."""
    from .report import plots
    from .report.html import esc, table

    k, low, high = oof_info["folds"], oof_info["low"], oof_info["high"]
    loss_items = [
        {
            "path": r["path"],
            "caption": f"{r['predicted']} {r['p_predicted']:.3f}\ntrue {r['label']}, loss {r['loss']:.2f}",
            "color": plots.RED if r["wrong"] else plots.GREEN,
        }
        for r in losses
    ]
    sus_items = [
        {
            "path": r["path"],
            "caption": f"given {r['label']} ({r['p_label']:.3f})\nlooks {r['suggested']} ({r['p_suggested']:.3f})",
            "color": plots.RED,
        }
        for r in suspects[:24]
    ]
    body = [
        "<h2>Validation</h2>",
        table(
            ["metric", "model", "dummy baseline"],
            [
                ["accuracy", m["accuracy"], m["baseline"]["accuracy"]],
                ["log loss", m["log_loss"], m["baseline"]["log_loss"]],
                ["photos", m["n_images"], m["n_images"]],
            ],
        ),
        f"<h2>Top {len(losses)} losses</h2>",
        '<p class="note">The validation photos the model is most confidently wrong about (highest log loss first): '
        "predicted class and probability, true class, and the photo's loss. Wrong predictions are red.</p>",
        figs.add("top_losses", plots.image_grid(loss_items, cols=min(6, max(1, len(loss_items)))), "top losses"),
        "<h2>Most confused pairs</h2>",
        table(
            ["true class", "predicted as", "photos", "share of the true class"],
            [[p["label"], p["predicted"], p["count"], p["share_of_label"]] for p in pairs[:20]],
        )
        if pairs
        else "<p>No confusions.</p>",
        "<h2>Likely mislabeled training photos</h2>",
        f'<p class="note">Out-of-fold predictions of a logistic regression on the backbone features ({k} folds; each photo scored by a '
        f"model that never saw it). Flagged: probability of the given label below {low:g} while another class has at least {high:g}. "
        f"{len(suspects)} of {oof_info['n_train']} training photos flagged"
        + (f"; out-of-fold accuracy {oof_info['accuracy']:.4f}" if k else "; too few photos per class for k-fold")
        + ". Check them by eye: a flagged photo can be right and just unusual.</p>",
    ]
    if suspects:
        body.append(
            figs.add("suspected_mislabels", plots.image_grid(sus_items, cols=min(6, len(sus_items))), "likely mislabeled training photos")
        )
        body.append(
            table(
                ["photo", "given label", "looks like", "p(given)", "p(looks like)"],
                [[Path(r["path"]).name, r["label"], r["suggested"], r["p_label"], r["p_suggested"]] for r in suspects[:100]],
            )
        )
    body.append("<h2>Files</h2><ul>" + "".join(f"<li><code>{esc(f.name)}</code></li>" for f in files) + "</ul>")
    return body
