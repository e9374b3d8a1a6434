"""Prediction records and the CSV files made from them."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .data.load import SkipLog
from .paths import atomic_write_text


@dataclass
class Predictions:
    """One record per readable image, plus the files that were skipped.

    Each record is ``{"path", "label", "probability", "probabilities": {class: p}}``.
    """

    records: list[dict[str, Any]]
    classes: list[str]
    skipped: SkipLog = field(default_factory=SkipLog)
    indices: np.ndarray | None = None  # positions of records in the input list
    probs: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.records)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.records[i]

    def to_csv(self, path: str | Path) -> Path:
        """Write ``path,label,prob_<class>...,error`` rows (atomic).

        Skipped files get a row too, with an empty label and probabilities and
        the reason in ``error``, so that the CSV accounts for every input file.
        """
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["path", "label", *[f"prob_{c}" for c in self.classes], "error"])
        for r in self.records:
            w.writerow([r["path"], r["label"], *[f"{r['probabilities'][c]:.6f}" for c in self.classes], ""])
        for p, reason in self.skipped.items:
            w.writerow([p, "", *["" for _ in self.classes], reason])
        return atomic_write_text(path, buf.getvalue())


def make_records(paths: list[Path], indices: np.ndarray, probs: np.ndarray, classes: list[str]) -> list[dict[str, Any]]:
    """Build prediction records from probabilities."""
    out = []
    for row, i in zip(probs, indices):
        k = int(row.argmax())
        out.append(
            {
                "path": str(paths[int(i)]),
                "label": classes[k],
                "probability": float(row[k]),
                "probabilities": {c: float(row[j]) for j, c in enumerate(classes)},
            }
        )
    return out
