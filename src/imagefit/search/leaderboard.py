"""Every candidate a search tried or skipped: validation scores, time, settings; as CSV or a dict."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..paths import atomic_write_text

LEADERBOARD_FILE = "leaderboard.csv"  # in the run folder
COLUMNS = (
    "rank",
    "name",
    "status",
    "sources",
    "train_views",
    "tta",
    "c",
    "score",
    "cv_log_loss",
    "val_log_loss",
    "val_accuracy",
    "estimate_s",
    "seconds",
    "elapsed_s",
    "note",
)


@dataclass
class Entry:
    """One candidate. ``score`` is what the search minimizes (validation log loss, or CV log loss for small sets)."""

    name: str
    status: str  # "ok", "skipped", "failed"
    sources: str = ""  # "lite0", "lite0+lite2" (a composite: concatenated features), "lite2@312"
    train_views: str = "orig"
    tta: bool = False
    c: float = math.nan
    score: float = math.nan
    cv_log_loss: float = math.nan
    val_log_loss: float = math.nan
    val_accuracy: float = math.nan
    estimate_s: float = math.nan
    seconds: float = 0.0
    elapsed_s: float = 0.0
    note: str = ""
    rank: int = 0


@dataclass
class Leaderboard:
    """The search's record; ``best`` is the chosen entry's name."""

    budget_s: float
    seed: int
    selection: str  # "validation" or "5-fold CV on train"
    entries: list[Entry] = field(default_factory=list)
    best: str = ""
    elapsed_s: float = 0.0

    @property
    def overrun(self) -> float:
        """Fraction of the budget spent beyond it (0 when within)."""
        return max(0.0, self.elapsed_s / self.budget_s - 1.0) if self.budget_s else 0.0

    def add(self, entry: Entry) -> Entry:
        self.entries.append(entry)
        return entry

    def ranked(self) -> list[Entry]:
        """Finished candidates best first (ties: the cheaper one), then the skipped/failed ones in order."""
        ok = sorted((e for e in self.entries if e.status == "ok"), key=lambda e: (e.score, e.seconds))
        for i, e in enumerate(ok, 1):
            e.rank = i
        return ok + [e for e in self.entries if e.status != "ok"]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: budget, elapsed, overrun, selection rule, best, and rows best first (NaN -> None)."""
        rows = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(e).items()} for e in self.ranked()]
        return {
            "budget_s": self.budget_s,
            "elapsed_s": round(self.elapsed_s, 2),
            "overrun": round(self.overrun, 4),
            "seed": self.seed,
            "selection": self.selection,
            "best": self.best,
            "columns": list(COLUMNS),
            "rows": rows,
        }

    def to_csv(self) -> str:
        """The rows as CSV text, best first."""
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
        w.writeheader()
        for e in self.ranked():
            row = asdict(e)
            w.writerow({k: _fmt(row[k]) for k in COLUMNS})
        return buf.getvalue()

    def write_csv(self, path: str | Path) -> Path:
        """Write ``leaderboard.csv`` atomically."""
        return atomic_write_text(path, self.to_csv())


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.6g}"
    return v


__all__ = ["COLUMNS", "LEADERBOARD_FILE", "Entry", "Leaderboard"]
