"""Labels written outside the folder structure: a CSV file, or the photos' own file names.

Both read exactly what is written or refuse with the line (or the rule) at
fault: a row without a label field, two labels for one photo and a header
that names no path or label column are errors; rows with an empty path or
label are dropped and the dropped lines are reported.

File names: a flat folder is read as labelled only when every name follows
Kaggle's ``<label>.<number>.<ext>`` (``cat.0.jpg``), with at least two labels
each seen :data:`KAGGLE_MIN_PER_LABEL` times or more. Any other naming needs
``labels_from_filename``, which applies :data:`FILENAME_LABEL_RULE` (or a
regular expression of the user's) to every name.
"""

from __future__ import annotations

import csv
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import check_label_regex
from ..errors import DataError

if TYPE_CHECKING:
    import _csv

PATH_COLUMNS = ("path", "filepath", "file", "filename", "image", "img", "id")
LABEL_COLUMNS = ("label", "class", "target", "category", "y")

# Kaggle's naming, the only one read as labels without being asked: "cat.0.jpg", "dog.12.png".
KAGGLE_NAME = re.compile(r"^(?P<label>[^.]+)\.(?P<num>\d+)\.(?P<ext>[A-Za-z0-9]+)$")
KAGGLE_MIN_PER_LABEL = 3
# The rule of labels_from_filename: the label is the name up to the first ".", "_" or "-" that is
# followed by a digit ("cat.0.jpg" -> cat, "cat.0.2.jpg" -> cat, "great_pyrenees_10.jpg" ->
# great_pyrenees, "IMG_1000.jpg" -> img); a name without such a part ("holiday.jpg") has no label.
FILENAME_LABEL_RULE = r"^(?P<label>.+?)[._-]\d"
FILENAME_LABEL = re.compile(FILENAME_LABEL_RULE)


@dataclass
class Labeled:
    """Paths with their label text, plus what was left out and why."""

    paths: list[Path] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    left_out: list[tuple[Path, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    rule: str = ""


def compile_label_regex(regex: str | None) -> re.Pattern[str]:
    """The file-name label rule: ``regex`` (a group named ``label``, else its first group) or the default.

    Raises:
        ConfigError: if ``regex`` is not a valid regular expression with a group.
    """
    return check_label_regex(regex) if regex else FILENAME_LABEL


def _label_of(pattern: re.Pattern[str], name: str) -> str | None:
    m = pattern.match(name)
    if m is None:
        return None
    text = m.group("label") if "label" in pattern.groupindex else m.group(1)
    label = (text or "").strip().lower()
    return label or None


def from_filenames(files: list[Path], *, regex: str | None = None) -> Labeled:
    """Labels from file names by :data:`FILENAME_LABEL_RULE` (or ``regex``); unmatched names are left out."""
    pattern = compile_label_regex(regex)
    out = Labeled(rule=pattern.pattern)
    for f in files:
        label = _label_of(pattern, f.name)
        if label is None:
            out.left_out.append((f, f"no label in the file name (rule {pattern.pattern})"))
        else:
            out.paths.append(f)
            out.labels.append(label)
    return out


def kaggle_names(files: list[Path]) -> Labeled | None:
    """Labels when every name follows Kaggle's ``<label>.<number>.<ext>``, or None.

    None also when fewer than two labels, or a label seen fewer than
    :data:`KAGGLE_MIN_PER_LABEL` times: camera names (``IMG_1000.jpg``) and
    names with one number too many (``cat.0.2.jpg``) are never taken for labels.
    """
    matches = [KAGGLE_NAME.match(f.name) for f in files]
    if not files or any(m is None for m in matches):
        return None
    labels = [m.group("label").lower() for m in matches if m is not None]
    counts = Counter(labels)
    if len(counts) < 2 or min(counts.values()) < KAGGLE_MIN_PER_LABEL:
        return None
    return Labeled(paths=list(files), labels=labels, rule=KAGGLE_NAME.pattern)


def read_csv(path: Path) -> Labeled:
    """Paths (relative to the CSV's folder, or absolute) and labels from a CSV file.

    Raises:
        DataError: no path or label column; a row without a label field or with
            more fields than the header; one photo given two labels; no rows.
    """
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            return _read_rows(path, csv.reader(fh))
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a UTF-8 CSV file ({exc.reason})") from None
    except csv.Error as exc:
        raise DataError(f"{path}: not a readable CSV file ({exc})") from None


def _columns(path: Path, header: list[str]) -> tuple[int, int]:
    lower = [h.lower() for h in header]
    pcol = next((lower.index(c) for c in PATH_COLUMNS if c in lower), None)
    lcol = next((lower.index(c) for c in LABEL_COLUMNS if c in lower), None)
    if pcol is None or lcol is None:
        raise DataError(
            f"{path}: CSV needs a path column ({'/'.join(PATH_COLUMNS)}) and a label column "
            f"({'/'.join(LABEL_COLUMNS)}); received columns {header}"
        )
    return pcol, lcol


def _read_rows(path: Path, reader: _csv.Reader) -> Labeled:
    header: list[str] | None = None
    out = Labeled(rule=f"CSV {path.name}")
    first_line: dict[str, tuple[int, str]] = {}  # normalized path -> (line, label)
    dropped: list[int] = []
    repeated: list[int] = []
    line = 0
    for row in reader:
        start, line = line + 1, reader.line_num
        if not any(c.strip() for c in row):
            continue  # a blank line is not a row
        if header is None:
            header = [h.strip() for h in row]
            pcol, lcol = _columns(path, header)
            continue
        if len(row) > len(header) or len(row) <= max(pcol, lcol):
            what = "more fields than the header (quote a name that holds a comma)" if len(row) > len(header) else "no label field"
            if len(row) <= pcol:
                what = "no path field"
            raise DataError(f"{path} line {start}: {what}: {len(row)} field(s), the header has {len(header)} ({', '.join(header)})")
        p, label = row[pcol].strip(), row[lcol].strip()
        if not p or not label:
            dropped.append(start)
            continue
        full = Path(p) if Path(p).is_absolute() else path.parent / p
        key = os.path.normpath(full)
        if key in first_line:
            before, before_label = first_line[key]
            if before_label != label:
                raise DataError(f"{path}: conflicting labels for {p}: '{before_label}' on line {before} and '{label}' on line {start}")
            repeated.append(start)
            continue
        first_line[key] = (start, label)
        out.paths.append(full)
        out.labels.append(label)
    if header is None:
        raise DataError(f"{path}: CSV file is empty (no header)")
    if dropped:
        out.notes.append(f"{path}: dropped {len(dropped)} row(s) without a path or a label (line(s) {_lines(dropped)})")
    if repeated:
        out.notes.append(f"{path}: {len(repeated)} row(s) repeat a path with the same label, counted once (line(s) {_lines(repeated)})")
    if not out.paths:
        raise DataError(f"{path}: CSV has no rows with both a path and a label")
    return out


def _lines(lines: list[int], most: int = 10) -> str:
    shown = ", ".join(map(str, lines[:most]))
    return shown + (f", ... ({len(lines) - most} more)" if len(lines) > most else "")
