"""The report's figures, each rendered to PNG bytes.

Figures are built with :class:`matplotlib.figure.Figure` and the Agg canvas
directly, never ``pyplot``: no global backend is switched, no window can
open, and nothing leaks between calls (safe in servers and threads).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..calibrate import N_BINS, reliability
from ..data.load import load_image
from ..errors import BadImageError

RED = "#c62828"
GREEN = "#2e7d32"
BLUE = "#1565c0"
ORANGE = "#ef6c00"
GREY = "#757575"
DPI = 100


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", facecolor="white")
    return buf.getvalue()


def _float(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def history_plot(history: Sequence[dict[str, Any]]) -> bytes:
    """Accuracy and loss per epoch, train and validation, learning-rate changes marked.

    Args:
        history: Rows with ``phase``, ``epoch``, ``loss``, ``accuracy``,
            ``val_loss``, ``val_accuracy``, ``lr`` (as in ``history.csv``;
            strings are accepted). Phases (``head`` then ``backbone``) are
            drawn one after the other on one epoch axis.
    """
    fig = Figure(figsize=(11, 4))
    ax_acc, ax_loss = fig.subplots(1, 2)
    x = np.arange(1, len(history) + 1)
    series = {k: np.array([_float(r.get(k)) for r in history]) for k in ("loss", "accuracy", "val_loss", "val_accuracy", "lr")}
    phases = [str(r.get("phase", "")) for r in history]
    for ax, key, title in ((ax_acc, "accuracy", "Accuracy"), (ax_loss, "loss", "Loss")):
        ax.plot(x, series[key], "o-", color=BLUE, ms=3, label=f"train {key}")
        ax.plot(x, series[f"val_{key}"], "o-", color=ORANGE, ms=3, label=f"validation {key}")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if key == "loss" and np.all(series[key][np.isfinite(series[key])] > 0) and len(history):
            ax.set_yscale("log")  # losses span decades; a log axis keeps the late epochs readable
    lr_label_done = False
    for i in range(1, len(history)):
        where = x[i] - 0.5
        if phases[i] != phases[i - 1]:
            for ax in (ax_acc, ax_loss):
                ax.axvline(where, color="black", lw=1.2)
            for ax in (ax_acc, ax_loss):
                ax.annotate(
                    f" {phases[i]}\n lr {series['lr'][i]:.2g}", (where, 0.98), xycoords=("data", "axes fraction"), fontsize=8, va="top"
                )
        elif series["lr"][i] != series["lr"][i - 1] and np.isfinite(series["lr"][i]):
            for ax in (ax_acc, ax_loss):
                ax.axvline(where, color=GREY, ls="--", lw=1, label=None if lr_label_done else "learning rate change")
            lr_label_done = True
            ax_loss.annotate(
                f"lr {series['lr'][i]:.2g}",
                (where, 0.97),
                xycoords=("data", "axes fraction"),
                fontsize=8,
                rotation=90,
                va="top",
                ha="right",
                color=GREY,
            )
    if len(history) and phases[0] and len(set(phases)) > 1:
        for ax in (ax_acc, ax_loss):
            ax.annotate(f" {phases[0]}", (0.5, 0.98), xycoords=("data", "axes fraction"), fontsize=8, va="top")
    ax_acc.legend(loc="lower right", fontsize=8)
    ax_loss.legend(loc="lower left", fontsize=8)
    if len(history) and np.isfinite(series["lr"]).any():
        _lr_axis(ax_loss, x, series["lr"])
        fig.suptitle(f"training history ({_lr_title(phases, series['lr'])})", fontsize=10)
    return _png(fig)


def _lr_axis(ax: Any, x: np.ndarray, lr: np.ndarray) -> None:
    """The learning rate per epoch as a line on a second (log) axis of ``ax``: the schedule as it ran."""
    ax2 = ax.twinx()
    ax2.plot(x, lr, "-", color=GREY, lw=1, label="learning rate")
    if np.all(lr[np.isfinite(lr)] > 0):
        ax2.set_yscale("log")
    ax2.set_ylabel("learning rate", color=GREY, fontsize=8)
    ax2.tick_params(axis="y", labelsize=7, colors=GREY)


def _lr_title(phases: list[str], lr: np.ndarray) -> str:
    """Each phase's learning rate as it started, from the history itself (the values actually used)."""
    parts: list[str] = []
    for i, phase in enumerate(phases):
        if (i == 0 or phase != phases[i - 1]) and np.isfinite(lr[i]):
            parts.append(f"{phase or 'train'} lr {lr[i]:.2g}")
    return ", ".join(parts) if len(parts) > 1 else f"initial learning rate {lr[0]:.2g}"


def confusion_plot(matrix: Sequence[Sequence[int]], classes: Sequence[str]) -> bytes:
    """Confusion matrix: rows are true classes, columns predictions; colour = share of the row."""
    cm = np.asarray(matrix, dtype=np.int64)
    n = len(classes)
    size = min(4 + 0.45 * n, 16)
    fig = Figure(figsize=(size + 1, size))
    ax = fig.subplots()
    rows = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=np.float64), where=rows > 0)
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    ax.set_xticks(range(n), [str(c) for c in classes], rotation=45 if n > 4 else 0, ha="right" if n > 4 else "center")
    ax.set_yticks(range(n), [str(c) for c in classes])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix")
    if n <= 30:
        for i in range(n):
            for j in range(n):
                ax.text(
                    j,
                    i,
                    str(cm[i, j]),
                    ha="center",
                    va="center",
                    fontsize=9 if n < 12 else 7,
                    color="white" if share[i, j] > 0.5 else "black",
                )
    return _png(fig)


def reliability_plot(
    labels: np.ndarray,
    probs_before: np.ndarray,
    probs_after: np.ndarray | None = None,
    temperature: float | None = None,
    n_bins: int = N_BINS,
) -> bytes:
    """Reliability diagram: accuracy vs confidence per bin, before and after temperature scaling.

    Bars on the diagonal are calibrated; bars below it are over-confident.
    The lower panels count the photos per bin (log scale: most sit near 1.0).
    """
    panels = [("uncalibrated (T = 1)", probs_before)]
    if probs_after is not None:
        panels.append((f"temperature scaled (T = {temperature:.3g})" if temperature else "calibrated", probs_after))
    fig = Figure(figsize=(5.2 * len(panels), 5.2))
    gs = fig.add_gridspec(2, len(panels), height_ratios=[3, 1], hspace=0.08)
    for k, (title, probs) in enumerate(panels):
        rb = reliability(probs, labels, n_bins)
        ax = fig.add_subplot(gs[0, k])
        axc = fig.add_subplot(gs[1, k], sharex=ax)
        centers = (rb.edges[:-1] + rb.edges[1:]) / 2
        width = 1.0 / n_bins
        used = rb.counts > 0
        ax.bar(centers[used], rb.accuracy[used], width=width * 0.95, color=BLUE, alpha=0.8, label="accuracy (share right)")
        # The gap as a red stem from each bin's accuracy to its mean confidence.
        ax.vlines(centers[used], rb.accuracy[used], rb.confidence[used], color=RED, lw=2)
        ax.plot(centers[used], rb.confidence[used], "_", color=RED, ms=14, mew=2.5, label="mean confidence")
        ax.plot([0, 1], [0, 1], "--", color=GREY, lw=1, label="perfect calibration")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_ylabel("accuracy")
        ax.set_title(f"{title}\nECE {rb.ece:.4f}", fontsize=10)
        ax.legend(loc="upper left", fontsize=8)
        ax.tick_params(labelbottom=False)
        ax.grid(alpha=0.3)
        axc.bar(centers, np.maximum(rb.counts, 0), width=width * 0.95, color=GREY)
        if rb.counts.max(initial=0) > 0:
            axc.set_yscale("log")
        axc.set_xlabel("confidence (top-class probability)")
        axc.set_ylabel("photos")
    return _png(fig)


def thumbnail(path: Path | str, size: int = 160) -> np.ndarray | None:
    """A photo shrunk to fit ``size`` pixels as an RGB array, or None if unreadable."""
    try:
        img = load_image(path, draft_size=size * 2)
    except (BadImageError, OSError):
        return None
    img.thumbnail((size, size))
    return np.asarray(img)


def image_grid(items: Sequence[dict[str, Any]], title: str = "", cols: int = 6, size: int = 160) -> bytes:
    """Photos in a grid with a caption under each, as PNG bytes.

    Drawn with Pillow rather than matplotlib: a grid is pixels and text, and
    matplotlib's axes, layout and compositing took over a second per grid on
    2 cores, paid by every training run's report.

    Args:
        items: ``{"path", "caption", "color"}`` per photo (``color`` optional,
            e.g. red for a wrong prediction, which also gets a red frame).
        title: Title above the grid.
        cols: Photos per row.
        size: Thumbnail size in pixels.
    """
    from PIL import Image, ImageDraw, ImageFont

    font, title_font = ImageFont.load_default(size=12), ImageFont.load_default(size=16)
    n = max(len(items), 1)
    cols = max(1, min(cols, n))
    rows = math.ceil(n / cols)
    lines = [str(it.get("caption", "")).splitlines() or [""] for it in items]
    pad, caption_h = 8, 6 + 15 * max((len(x) for x in lines), default=1)
    top = 30 if title else 0
    cell_w, cell_h = size + pad, size + caption_h + pad
    canvas = Image.new("RGB", (cols * cell_w + pad, top + rows * cell_h + pad), "white")
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((canvas.width // 2, 8), title, fill="black", font=title_font, anchor="mt")
    if not items:
        draw.text((pad + size // 2, top + pad + size // 2), "no photos", fill="black", font=font, anchor="mm")
    for k, it in enumerate(items):
        x0, y0 = pad + (k % cols) * cell_w, top + pad + (k // cols) * cell_h
        color = str(it.get("color", "black"))
        caption = "\n".join(_fit(draw, line, font, size) for line in lines[k])
        draw.multiline_text((x0 + size // 2, y0 + 2), caption, fill=color, font=font, anchor="ma", align="center", spacing=3)
        y_img = y0 + caption_h
        arr = thumbnail(it["path"], size)
        if arr is None:
            draw.rectangle((x0, y_img, x0 + size - 1, y_img + size - 1), outline=GREY)
            draw.text((x0 + size // 2, y_img + size // 2), "unreadable", fill=RED, font=font, anchor="mm")
            continue
        h, w = arr.shape[:2]
        # Centered in its cell, as matplotlib's imshow showed it.
        ix, iy = x0 + (size - w) // 2, y_img + (size - h) // 2
        canvas.paste(Image.fromarray(arr), (ix, iy))
        if color == RED:
            # A red frame marks a wrong prediction even in a greyscale print.
            draw.rectangle((ix, iy, ix + w - 1, iy + h - 1), outline=RED, width=3)
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    return buf.getvalue()


def _fit(draw: Any, text: str, font: Any, width: int) -> str:
    """``text``, shortened with an ellipsis until it fits ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def prediction_items(
    paths: Sequence[Path], labels: np.ndarray, probs: np.ndarray, classes: Sequence[str], n: int = 24, seed: int = 0
) -> list[dict[str, Any]]:
    """Captions for a validation grid: every mistake first (up to half), then random right ones.

    Wrong predictions are captioned ``pred p (true: x)`` in red.
    """
    labels = np.asarray(labels)
    pred = probs.argmax(1) if len(probs) else np.zeros(0, dtype=np.int64)
    wrong = np.flatnonzero(pred != labels)
    right = np.flatnonzero(pred == labels)
    # The most confident mistakes are the interesting ones.
    wrong = wrong[np.argsort(-probs[wrong, pred[wrong]], kind="stable")] if len(wrong) else wrong
    n_wrong = min(len(wrong), max(n // 2, n - len(right)))
    rng = np.random.default_rng(seed)
    pick_right = rng.choice(right, size=min(len(right), n - n_wrong), replace=False) if len(right) else right
    chosen = list(wrong[:n_wrong]) + sorted(pick_right.tolist())
    items = []
    for i in chosen:
        k = int(pred[i])
        ok = k == int(labels[i])
        caption = f"{classes[k]} {probs[i, k]:.3f}" + ("" if ok else f"\n(true: {classes[int(labels[i])]})")
        items.append({"path": paths[i], "caption": caption, "color": GREEN if ok else RED})
    return items


def compare_plot(rows: Sequence[dict[str, Any]]) -> bytes:
    """Accuracy and log loss of several runs side by side (bars), baseline dashed."""
    names = [str(r["name"]) for r in rows]
    fig = Figure(figsize=(max(8, 1.4 * len(rows) + 5), 4.4), layout="constrained")
    ax_acc, ax_loss = fig.subplots(1, 2)
    x = np.arange(len(rows))
    acc = [_float(r.get("accuracy")) for r in rows]
    loss = [_float(r.get("log_loss")) for r in rows]
    ax_acc.bar(x, acc, color=BLUE)
    ax_loss.bar(x, loss, color=ORANGE)
    for ax, vals, fmt in ((ax_acc, acc, "{:.4f}"), (ax_loss, loss, "{:.4f}")):
        for xi, v in zip(x, vals):
            if math.isfinite(v):
                ax.annotate(fmt.format(v), (xi, v), ha="center", va="bottom", fontsize=8)
        ax.set_xticks(x, names, rotation=30 if len(rows) > 3 else 0, ha="right" if len(rows) > 3 else "center", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    finite_acc = [a for a in acc if math.isfinite(a)]
    if finite_acc:
        lo = min(finite_acc)
        ax_acc.set_ylim(max(0.0, lo - (1 - lo) * 1.5 - 0.01), 1.0)  # zoom: the differences are in the last digits
    base_loss = [_float(r.get("baseline_log_loss")) for r in rows]
    if base_loss and all(math.isfinite(b) for b in base_loss) and len(set(round(b, 6) for b in base_loss)) == 1:
        ax_loss.set_title(f"Validation log loss\n(lower is better; dummy baseline {base_loss[0]:.3f})", fontsize=10)
    else:
        ax_loss.set_title("Validation log loss\n(lower is better)", fontsize=10)
    ax_acc.set_title("Validation accuracy\n(higher is better)", fontsize=10)
    return _png(fig)


def lr_find_plot(lrs: Sequence[float], losses: Sequence[float], suggestion: float, rule: str = "valley") -> bytes:
    """The learning-rate finder's curve: smoothed loss against learning rate (log x), the suggestion marked."""
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.plot(lrs, losses, "-", color=BLUE, lw=1.5, label="smoothed training loss")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    if len(lrs):
        at = int(np.argmin(np.abs(np.log(np.asarray(lrs)) - math.log(suggestion))))
        ax.plot([lrs[at]], [losses[at]], "o", color=ORANGE, ms=8, label=f"suggestion ({rule}): {suggestion:.2g}")
        ax.axvline(suggestion, color=ORANGE, ls="--", lw=1)
    ax.legend(fontsize=8)
    ax.set_title("learning-rate finder", fontsize=10)
    return _png(fig)


def unknown_plot(val_scores: np.ndarray, threshold: float, others: dict[str, np.ndarray] | None = None) -> bytes:
    """Histogram of the unknown-photo scores of the validation photos (and of other sets), with the threshold line.

    Photos right of the line are answered "unknown". The bars are shares of each
    set, so a small validation set and a large other-domain set compare.
    """
    sets = {"validation (in distribution)": np.asarray(val_scores, dtype=np.float64)}
    sets.update({k: np.asarray(v, dtype=np.float64) for k, v in (others or {}).items()})
    top = max([threshold * 1.5, *(float(v.max()) for v in sets.values() if len(v))])
    bins = np.linspace(0.0, top * 1.02, 41)
    fig = Figure(figsize=(7.5, 3.6))
    ax = fig.add_subplot()
    for (name, v), color in zip(sets.items(), (BLUE, ORANGE, GREEN, RED)):
        if len(v):
            flagged = float(np.mean(v > threshold))
            ax.hist(
                v,
                bins=list(bins),
                weights=list(np.full(len(v), 1.0 / len(v))),
                color=color,
                alpha=0.55,
                label=f"{name}: {flagged:.1%} flagged",
            )
    ax.axvline(threshold, color="black", lw=1.5, ls="--", label=f"threshold {threshold:.3f}")
    ax.set_xlabel("score: cosine distance to the nearest training photo")
    ax.set_ylabel("share of photos")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)
