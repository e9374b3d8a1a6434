"""``imagefit compare``: several runs' validation metrics side by side."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.table import Table

from ..artifacts import read_meta
from ..errors import ConfigError
from ..paths import atomic_write_text
from . import plots
from .html import REPORT_FILE, SEARCH_COLUMNS, Figures, esc, page, search_rows, search_section, search_summary, table

COLUMNS = (
    "name",
    "model",
    "strategy",
    "accuracy",
    "log_loss",
    "log_loss_uncalibrated",
    "ece",
    "temperature",
    "roc_auc",
    "seconds",
    "n_train",
    "n_val",
)


def summarize(run: str | Path) -> dict[str, Any]:
    """One run's headline figures from its ``imagefit.json``.

    Raises:
        ArtifactError: if ``run`` is not a readable run folder.
    """
    folder = Path(run)
    meta = read_meta(folder)
    m = (meta.get("metrics") or {}).get("val") or {}
    cal = m.get("calibration") or {}
    cfg = meta.get("config") or {}
    data = meta.get("data") or {}
    base = m.get("baseline") or {}
    return {
        "name": folder.name,
        "path": str(folder),
        "model": meta["backbone"]["name"],
        "strategy": (cfg.get("train") or {}).get("strategy", "?"),
        "accuracy": m.get("accuracy"),
        "log_loss": m.get("log_loss"),
        "log_loss_uncalibrated": cal.get("log_loss_before"),
        "ece": m.get("ece"),
        "temperature": meta.get("temperature", 1.0),
        "roc_auc": m.get("roc_auc"),
        "seconds": meta.get("seconds"),
        "n_train": data.get("n_train"),
        "n_val": data.get("n_val"),
        "val_data": data.get("val") or data.get("train"),
        "baseline_accuracy": base.get("accuracy"),
        "baseline_log_loss": base.get("log_loss"),
        "settings": settings(cfg),
        "search": meta.get("search"),
    }


def settings(config: dict[str, Any]) -> dict[str, Any]:
    """A run's settings, flat (``lr``, ``epochs``, ``augment`` ...), with automatic values resolved as training used them."""
    flat: dict[str, Any] = {}
    for section in ("data", "model", "train"):
        for key, value in (config.get(section) or {}).items():
            flat["model" if (section, key) == ("model", "name") else key] = value
    try:
        from ..config import TrainConfig

        tc = TrainConfig(**(config.get("train") or {}))
        flat.update(lr=tc.resolved_lr, epochs=tc.resolved_epochs, batch_size=tc.resolved_batch_size)
    except (TypeError, ValueError):
        pass  # an older or edited record: show its values as stored
    return flat


def differing_settings(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Names of the settings whose values differ between runs (model and strategy have columns of their own)."""
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r.get("settings", {}) if k not in keys and k not in ("model", "strategy")]
    return [k for k in keys if len({repr(r.get("settings", {}).get(k)) for r in rows}) > 1]


def compare(runs: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Summaries of ``runs`` in the given order; names made unique with their parent folder.

    Raises:
        ConfigError: if no run is given.
        ArtifactError: if one is not a run folder.
    """
    if not runs:
        raise ConfigError("compare needs at least one run folder; received none")
    rows = [summarize(r) for r in runs]
    names = [r["name"] for r in rows]
    for r in rows:
        if names.count(r["name"]) > 1:
            r["name"] = f"{Path(r['path']).parent.name}/{r['name']}"
    return rows


def comparable_note(rows: Sequence[dict[str, Any]]) -> str | None:
    """A warning when runs were validated on different data (their metrics then do not compare)."""
    vals = {(str(r.get("val_data")), r.get("n_val")) for r in rows}
    if len(vals) > 1:
        return "runs were validated on different data: compare their metrics with care"
    return None


def _cell(v: Any, key: str) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "-"
        if key in ("lr", "min_lr", "weight_decay", "lr_factor", "dropout", "val_split", "unfreeze", "c"):
            return f"{v:g}"
        return f"{v:.1f}" if key == "seconds" else f"{v:.3f}" if key == "temperature" else f"{v:.4f}"
    return str(v)


# Which columns stay when the terminal is narrow, most wanted first; the settings that differ come after these.
PRIORITY = ("name", "accuracy", "log_loss", "model", "strategy")
LATER = ("ece", "seconds", "roc_auc", "log_loss_uncalibrated", "temperature", "n_train", "n_val")


def _value(r: dict[str, Any], key: str) -> Any:
    return r[key] if key in r else r.get("settings", {}).get(key)


def _fitting_columns(rows: Sequence[dict[str, Any]], width: int) -> list[str]:
    """Columns in display order that fit ``width`` whole: by priority, each as wide as its widest cell."""
    wanted = [*PRIORITY, *differing_settings(rows), *LATER]
    used, chosen = 1, []  # the table's left border
    for key in wanted:
        cells = [_cell(_value(r, key), key) for r in rows]
        # Cells and headers never wrap (except the name, which folds); 3 = padding and border.
        need = max(len(c) for c in [key, *cells]) + 3
        if key == "name":
            need = min(need, 24)
        if used + need <= width or key == "name":
            chosen.append(key)
            used += need
    settings_first = [k for k in wanted if k in chosen and k not in LATER and k not in PRIORITY]
    order = ["name", "model", "strategy", *settings_first, "accuracy", "log_loss", *[k for k in LATER if k in chosen]]
    return [k for k in order if k in chosen]


def rich_table(rows: Sequence[dict[str, Any]], width: int | None = None) -> Table:
    """The comparison as a rich table; the lowest log loss in bold green.

    Args:
        rows: :func:`compare`'s rows.
        width: Terminal columns: the table keeps the columns that fit whole (the most
            important first, then the settings that differ between runs), and its
            caption names those left out (all are in compare.csv). None: all columns.
    """
    keys = _fitting_columns(rows, width) if width else ["name", "model", "strategy", *differing_settings(rows), *COLUMNS[3:]]
    left = [k for k in (*COLUMNS, *differing_settings(rows)) if k not in keys]
    caption = f"not shown at this width: {', '.join(k.replace('_', ' ') for k in left)}" if left else None
    t = Table(title="validation metrics (model = calibrated)", caption=caption)
    for k in keys:
        t.add_column(k.replace("_", " "), overflow="fold" if k == "name" else "ellipsis", no_wrap=k != "name")
    losses = [r["log_loss"] for r in rows if isinstance(r.get("log_loss"), (int, float))]
    best = min(losses) if losses else None
    for r in rows:
        style = "bold green" if best is not None and r.get("log_loss") == best and len(rows) > 1 else None
        t.add_row(*[_cell(_value(r, k), k) for k in keys], style=style)
    return t


def leaderboard_table(search: dict[str, Any], title: str) -> Table:
    """A search run's leaderboard for the terminal (the chosen candidate marked ``*``; columns no row fills left out)."""
    rows = search_rows(search)
    keep = [i for i, key in enumerate(SEARCH_COLUMNS) if any(_cell(row[i], key) not in ("-", "") for row in rows)]
    # On a terminal: the status only when something was skipped, the CV loss only when it chose (it repeats the validation loss otherwise).
    cv = "CV" in str(search.get("selection"))
    keep = [
        i
        for i in keep
        if not (SEARCH_COLUMNS[i] == "status" and all(r[2] == "ok" for r in rows)) and (SEARCH_COLUMNS[i] != "cv_log_loss" or cv)
    ]
    t = Table(title=f"{title}: {search_summary(search)}", title_justify="left")
    short = {"rank": "#", "val_log_loss": "val loss", "val_accuracy": "val acc", "cv_log_loss": "cv loss", "seconds": "s"}
    for i in keep:  # every column but the note kept on one line: numbers must stay readable on 80 columns
        key = SEARCH_COLUMNS[i]
        t.add_column(short.get(key, key), no_wrap=key != "note", justify="right" if key not in ("name", "status", "note") else "left")
    for row in rows:
        t.add_row(*(_cell(row[i], SEARCH_COLUMNS[i]) for i in keep))
    return t


def to_csv(rows: Sequence[dict[str, Any]]) -> str:
    """The comparison as CSV text."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=[*COLUMNS, "baseline_accuracy", "baseline_log_loss", "path"], extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def write_compare_report(rows: Sequence[dict[str, Any]], out: str | Path) -> Path:
    """Write ``compare.png``, ``compare.csv`` and ``report.html`` into ``out``; returns the report's path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    figs = Figures(out)
    atomic_write_text(out / "compare.csv", to_csv(rows))
    body = [
        "<h2>Metrics</h2>",
        table([c.replace("_", " ") for c in COLUMNS], [[r.get(c) for c in COLUMNS] for r in rows]),
        '<p class="note">Validation figures stored in each run; log loss and accuracy are the calibrated model\'s '
        "(what <code>predict</code> returns), <i>log loss uncalibrated</i> is before temperature scaling.</p>",
    ]
    base = next((r for r in rows if r.get("baseline_log_loss") is not None), None)
    if base:
        body.append(
            f'<p class="note">Dummy baseline (first run with one): accuracy {base["baseline_accuracy"]:.4f}, log loss {base["baseline_log_loss"]:.4f}.</p>'
        )
    note = comparable_note(rows)
    if note:
        body.append(f'<p class="bad">{esc(note)}</p>')
    body += ["<h2>Plot</h2>", figs.add("compare", plots.compare_plot(rows), "accuracy and log loss per run")]
    for r in rows:  # a run made by a search: every candidate it tried
        body += [
            part.replace("<h2>Search leaderboard</h2>", f"<h2>Search leaderboard: {esc(r['name'])}</h2>")
            for part in search_section(r.get("search"))
        ]
    return atomic_write_text(out / REPORT_FILE, page(f"imagefit: {len(rows)} runs compared", f"written to <code>{esc(out)}</code>", body))
