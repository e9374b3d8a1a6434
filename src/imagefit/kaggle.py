"""Kaggle "Dogs vs. Cats" workflow: organise the flat training folder, write and score submissions.

* :func:`prep` turns ``train/cat.0.jpg, dog.1.jpg ...`` into ``cat/`` and
  ``dog/`` class folders made of links (symbolic, else hard) to the original
  files: nothing is copied, and a manifest lets :func:`undo` remove exactly
  what was made.
* :func:`write_submission` writes ``id,label`` rows sorted by the numeric id
  of ``1.jpg``-style names, ``label`` being the probability of the second class.
* :func:`score` computes a submission's log loss and accuracy against a solution.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .data.discover import _FILENAME_LABEL, is_image_name
from .errors import DataError, OutputError, invalid
from .paths import atomic_write_json, atomic_write_text

MANIFEST = ".imagefit-kaggle-prep.json"
EPS = 1e-15
_ID = re.compile(r"^\d+$")


@dataclass
class PrepResult:
    """What :func:`prep` (or :func:`undo`) did."""

    source: Path
    out: Path
    method: str  # "symlink" or "hardlink" ("undo" for undo)
    counts: dict[str, int]
    ignored: list[Path] = field(default_factory=list)
    manifest: Path | None = None


def default_out(train_dir: Path) -> Path:
    """``<train_dir>-by-class`` beside the flat folder."""
    train_dir = Path(train_dir)
    return train_dir.parent / f"{train_dir.name}-by-class"


def _link(src: Path, dst: Path, method: str | None) -> str:
    """Link ``dst`` to ``src``; symbolic (relative, so the pair can move together) else hard."""
    if method in (None, "symlink"):
        try:
            os.symlink(os.path.relpath(src, dst.parent), dst)
            return "symlink"
        except (OSError, NotImplementedError):
            if method == "symlink":
                raise
    os.link(src, dst)
    return "hardlink"


def prep(train_dir: str | Path, out: str | Path | None = None) -> PrepResult:
    """Organise a flat Kaggle folder (``cat.0.jpg``, ``dog.1.jpg``) into class folders of links.

    Args:
        train_dir: The flat folder.
        out: Where the class folders go (default ``<train_dir>-by-class``).

    Returns:
        Per-class counts, the link method and the manifest's path.

    Raises:
        DataError: no ``label.N.ext`` names, or fewer than 2 labels.
        OutputError: ``out`` already prepared, a link target exists, or the
            filesystem allows neither symbolic nor hard links.
    """
    src_dir = Path(train_dir)
    if not src_dir.is_dir():
        raise DataError(f"kaggle-prep: {src_dir} is not a folder")
    out_dir = Path(out) if out else default_out(src_dir)
    if (out_dir / MANIFEST).exists():
        raise OutputError(f"{out_dir} was already prepared ({MANIFEST} exists); run with --undo first")
    if out_dir.resolve() == src_dir.resolve():
        raise invalid("--out", str(out_dir), "a folder other than TRAIN_DIR")
    plan: list[tuple[Path, Path, str]] = []
    ignored: list[Path] = []
    for f in sorted(p for p in src_dir.iterdir() if p.is_file() and not p.name.startswith(".")):
        m = _FILENAME_LABEL.match(f.name)
        if not is_image_name(f) or m is None:
            ignored.append(f)
            continue
        label = m.group("label").lower()
        plan.append((f, out_dir / label / f.name, label))
    counts = Counter(label for _, _, label in plan)
    if len(counts) < 2:
        raise DataError(
            f"kaggle-prep: {src_dir} has {len(counts)} label(s) {sorted(counts)} in file names; "
            "need at least 2 (names like cat.0.jpg, dog.1.jpg)"
        )
    clashes = [d for _, d, _ in plan if d.exists() or d.is_symlink()]
    if clashes:
        raise OutputError(f"kaggle-prep: {len(clashes)} file(s) already exist under {out_dir}, e.g. {clashes[0]}; choose another --out")
    made_dirs = [out_dir / c for c in sorted(counts) if not (out_dir / c).exists()]
    for c in sorted(counts):
        (out_dir / c).mkdir(parents=True, exist_ok=True)
    method: str | None = None
    done: list[str] = []
    try:
        for src, dst, _ in plan:
            method = _link(src.resolve(), dst, method)
            done.append(str(dst.relative_to(out_dir)))
    except OSError as exc:
        # Leave nothing half-made behind: remove what this call linked.
        for rel in done:
            (out_dir / rel).unlink(missing_ok=True)
        for d in made_dirs:
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()
        raise OutputError(f"kaggle-prep: cannot link {src} into {out_dir} without copying ({exc.strerror or exc})") from None
    manifest = atomic_write_json(
        out_dir / MANIFEST,
        {
            "source": str(src_dir.resolve()),
            "method": method,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "dirs": [str(d.relative_to(out_dir)) for d in made_dirs],
            "links": done,
        },
    )
    return PrepResult(src_dir, out_dir, method or "symlink", dict(sorted(counts.items())), ignored, manifest)


def undo(train_dir: str | Path, out: str | Path | None = None) -> PrepResult:
    """Remove what :func:`prep` made, as listed in its manifest; the original photos are untouched.

    Only links that still point at their source file are removed; a file put
    there since (not one of ours) is kept, and so is its folder.

    Raises:
        OutputError: no manifest in ``out``.
    """
    src_dir = Path(train_dir)
    out_dir = Path(out) if out else default_out(src_dir)
    mpath = out_dir / MANIFEST
    if not mpath.is_file():
        raise OutputError(f"kaggle-prep --undo: {out_dir} has no {MANIFEST}; nothing to undo")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
        source = Path(manifest["source"])
        links = list(manifest["links"])
        dirs = list(manifest.get("dirs", []))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise OutputError(f"{mpath}: unreadable manifest ({exc})") from None
    counts: Counter[str] = Counter()
    kept: list[Path] = []
    for rel in links:
        link = out_dir / rel
        target = source / Path(rel).name
        if link.is_symlink():
            ours = (link.parent / os.readlink(link)).resolve() == target.resolve()
        else:
            ours = link.is_file() and target.exists() and os.path.samefile(link, target)
        if ours:
            link.unlink()
            counts[Path(rel).parent.name] += 1
        elif link.exists():
            kept.append(link)
    for d in sorted(dirs, key=lambda p: -len(Path(p).parts)):
        folder = out_dir / d
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    mpath.unlink()
    if out_dir.is_dir() and not any(out_dir.iterdir()):
        out_dir.rmdir()
    return PrepResult(src_dir, out_dir, "undo", dict(sorted(counts.items())), kept, None)


def kaggle_id(path: str | Path) -> int:
    """The numeric id of a Kaggle test photo (``123.jpg`` -> 123).

    Raises:
        DataError: if the file name is not a number.
    """
    stem = Path(path).stem
    if not _ID.match(stem):
        raise invalid(f"Kaggle test file name {Path(path).name!r} (no numeric id)", stem, "names like 123.jpg", DataError)
    return int(stem)


def submission_rows(
    paths: list[Path], probs: np.ndarray, classes: list[str], missing: list[Path] | None = None
) -> tuple[list[str], list[list[Any]]]:
    """Header and rows of a submission, sorted by numeric id.

    Two classes give ``id,label`` with ``label`` = probability of the second
    class (``dog`` in Dogs vs. Cats). More classes give one probability column
    per class. Photos in ``missing`` (unreadable) get the uniform probability,
    because a submission with a row missing is rejected outright.

    Raises:
        DataError: on a non-numeric or duplicate id.
    """
    rows: dict[int, list[float]] = {}
    uniform = [1.0 / len(classes)] * len(classes)
    for p, row in [*zip(paths, probs.tolist()), *((m, uniform) for m in (missing or []))]:
        i = kaggle_id(p)
        if i in rows:
            raise DataError(f"--kaggle: id {i} appears twice (e.g. {Path(p).name})")
        rows[i] = row
    if len(classes) == 2:
        return ["id", "label"], [[i, rows[i][1]] for i in sorted(rows)]
    return ["id", *classes], [[i, *rows[i]] for i in sorted(rows)]


def write_submission(path: str | Path, paths: list[Path], probs: np.ndarray, classes: list[str], missing: list[Path] | None = None) -> Path:
    """Write :func:`submission_rows` as CSV (atomic); probabilities with 10 significant digits."""
    header, rows = submission_rows(paths, probs, classes, missing)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for r in rows:
        w.writerow([r[0], *(format(float(v), ".10g") for v in r[1:])])
    return atomic_write_text(path, buf.getvalue())


def _read_id_label(path: Path, what: str) -> dict[int, float]:
    if not path.is_file():
        raise DataError(f"{what} not found: {path}")
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            cols = {(h or "").strip().lower(): h for h in (reader.fieldnames or [])}
            if "id" not in cols or "label" not in cols:
                raise DataError(f"{path}: {what} needs columns id,label; received {list(reader.fieldnames or [])}")
            out: dict[int, float] = {}
            for n, r in enumerate(reader, start=2):
                try:
                    i, v = int(str(r[cols["id"]]).strip()), float(str(r[cols["label"]]).strip())
                except ValueError:
                    raise DataError(
                        f"{path}:{n}: id must be an integer and label a number; received {r[cols['id']]!r}, {r[cols['label']]!r}"
                    ) from None
                if i in out:
                    raise DataError(f"{path}:{n}: id {i} appears twice")
                if not math.isfinite(v):
                    raise invalid(f"label at {path}:{n}", v, "a finite number", DataError)
                out[i] = v
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a UTF-8 CSV file ({exc.reason})") from None
    if not out:
        raise DataError(f"{path}: {what} has no rows")
    return out


def score(submission: str | Path, solution: str | Path) -> dict[str, Any]:
    """Log loss (probabilities clipped to ``[1e-15, 1 - 1e-15]``, as Kaggle) and accuracy (threshold 0.5).

    Args:
        submission: ``id,label`` CSV, label = probability of class 1.
        solution: ``id,label`` CSV, label 0 or 1 (extra columns ignored).

    Raises:
        DataError: unreadable files, probabilities outside [0, 1], labels other
            than 0/1, or ids that do not match.
    """
    sub = _read_id_label(Path(submission), "submission")
    sol = _read_id_label(Path(solution), "solution")
    bad_labels = sorted({v for v in sol.values() if v not in (0.0, 1.0)})
    if bad_labels:
        raise DataError(f"{solution}: solution labels must be 0 or 1; received {bad_labels[:5]}")
    out_of_range = [i for i, v in sub.items() if not 0.0 <= v <= 1.0]
    if out_of_range:
        raise DataError(f"{submission}: label must be a probability in [0, 1]; received {sub[out_of_range[0]]!r} for id {out_of_range[0]}")
    missing = sorted(set(sol) - set(sub))
    extra = sorted(set(sub) - set(sol))
    if missing or extra:
        raise DataError(
            f"submission and solution ids differ: {len(missing)} missing from the submission (e.g. {missing[:3]}), "
            f"{len(extra)} not in the solution (e.g. {extra[:3]})"
        )
    ids = sorted(sol)
    y = np.array([sol[i] for i in ids])
    p = np.clip(np.array([sub[i] for i in ids]), EPS, 1 - EPS)
    loss = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    acc = float(np.mean((p > 0.5) == (y == 1)))
    return {"n": len(ids), "log_loss": loss, "accuracy": acc}
