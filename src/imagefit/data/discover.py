"""Find labeled photos in the layouts users have on disk.

Supported layouts of ``DATA``:

* a folder with one subfolder per class (``cats/``, ``dogs/``);
* a folder with ``train/`` and optionally ``valid|validation|val/`` and ``test/``;
* a flat folder whose file names carry the label (Kaggle's ``cat.0.jpg``);
* a CSV file with a path column and a label column.
"""

from __future__ import annotations

import csv
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".ppm", ".pgm"})
VAL_NAMES = ("valid", "validation", "val")
PATH_COLUMNS = ("path", "filepath", "file", "filename", "image", "img", "id")
LABEL_COLUMNS = ("label", "class", "target", "category", "y")
# "cat.0.jpg", "dog_12.png", "Abyssinian_1.jpg": a label, a separator, a number.
_FILENAME_LABEL = re.compile(r"^(?P<label>.+?)[._\-](?P<num>\d+)(?:\.[^.]*)?$")


@dataclass
class ImageSet:
    """Image paths with integer labels indexing ``classes``.

    ``labels`` is empty for an unlabeled set (a Kaggle test folder).
    """

    paths: list[Path]
    labels: list[int]
    classes: list[str]
    source: str = ""

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def labeled(self) -> bool:
        """Whether every path has a label."""
        return len(self.labels) == len(self.paths) and bool(self.paths)

    def counts(self) -> dict[str, int]:
        """Images per class name."""
        c = Counter(self.labels)
        return {name: c.get(i, 0) for i, name in enumerate(self.classes)}

    def subset(self, indices: list[int]) -> ImageSet:
        """A new set holding only ``indices``, classes unchanged."""
        return ImageSet(
            [self.paths[i] for i in indices],
            [self.labels[i] for i in indices] if self.labels else [],
            list(self.classes),
            self.source,
        )

    def with_classes(self, classes: list[str]) -> ImageSet:
        """Re-index labels onto another class list (a model's), failing on unknown classes."""
        unknown = sorted(set(self.classes) - set(classes))
        if unknown:
            raise DataError(f"{self.source or 'data'}: classes {unknown} are not known to the model; the model's classes are {classes}")
        remap = [classes.index(c) for c in self.classes]
        return ImageSet(list(self.paths), [remap[y] for y in self.labels], list(classes), self.source)


@dataclass
class Discovered:
    """What :func:`discover` found: a train set and, when the layout has them, val and test."""

    train: ImageSet
    val: ImageSet | None = None
    test: ImageSet | None = None
    layout: str = ""
    ignored: list[Path] = field(default_factory=list)


def is_image_name(path: Path) -> bool:
    """Whether ``path`` has an image file extension."""
    return path.suffix.lower() in IMAGE_EXTENSIONS


def _visible(name: str) -> bool:
    return not name.startswith(".") and name not in ("Thumbs.db", "desktop.ini", "__MACOSX")


def list_files(folder: Path) -> list[Path]:
    """Every visible file below ``folder``, recursively, sorted (links and broken links included)."""
    out: list[Path] = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if _visible(d))
        out.extend(Path(root) / f for f in sorted(files) if _visible(f))
    return out


def list_images(paths: list[str | Path]) -> list[Path]:
    """Expand files and folders (recursively) into image paths, for prediction.

    Files named directly are kept whatever their extension, so that a bad file
    is reported rather than silently dropped; inside folders only image
    extensions are taken.
    """
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            out.extend(f for f in list_files(p) if is_image_name(f))
        elif p.exists() or p.is_symlink():
            out.append(p)
        else:
            raise DataError(f"path not found: {p}")
    return out


def discover(data: str | Path, *, labels_from_filename: bool = False) -> Discovered:
    """Find the labeled images of ``data``, whatever its layout.

    Args:
        data: A folder or a CSV file.
        labels_from_filename: Force reading labels from file names (``cat.0.jpg``).

    Returns:
        The train set, plus val/test sets when the layout holds them.

    Raises:
        DataError: if the path is missing, empty, or holds no usable layout.
    """
    root = Path(data)
    if not root.exists():
        raise DataError(f"data not found: {root}")
    if root.is_file():
        if root.suffix.lower() != ".csv":
            raise DataError(f"{root}: expected a folder or a .csv file, received a {root.suffix or 'plain'} file")
        return Discovered(train=_from_csv(root), layout="csv")

    subdirs = sorted(d for d in root.iterdir() if d.is_dir() and _visible(d.name))
    names = {d.name.lower(): d for d in subdirs}
    if "train" in names and not labels_from_filename:
        train = discover(names["train"]).train
        val = next((discover(names[n]).train for n in VAL_NAMES if n in names), None)
        test = None
        if "test" in names:
            test = _labeled_or_not(names["test"], train.classes)
        if val is not None:
            val = _align(val, train.classes)
        return Discovered(train=train, val=val, test=test, layout="train/val/test")

    if subdirs and not labels_from_filename:
        return Discovered(train=_from_class_folders(root, subdirs), layout="class folders")

    files = [f for f in list_files(root) if is_image_name(f)]
    if not files:
        raise DataError(f"{root}: no images found (expected class subfolders, train/, a CSV, or cat.0.jpg-style names)")
    labeled = _from_filenames(root, files, forced=labels_from_filename)
    if labeled is None:
        raise DataError(
            f"{root}: {len(files)} images but no labels: put them in one subfolder per class, "
            "name them like cat.0.jpg (use --labels-from-filename), or give a CSV"
        )
    return Discovered(train=labeled, layout="labels from file names")


def _from_class_folders(root: Path, subdirs: list[Path]) -> ImageSet:
    paths: list[Path] = []
    labels: list[int] = []
    classes = [d.name for d in subdirs]
    for i, d in enumerate(subdirs):
        files = list_files(d)
        if not files:
            raise DataError(f"class folder '{d.name}' in {root} is empty; remove it or add images")
        paths.extend(files)
        labels.extend([i] * len(files))
    if len(classes) < 2:
        raise DataError(f"{root}: found 1 class folder ({classes[0]}); a classifier needs at least 2 classes")
    return ImageSet(paths, labels, classes, str(root))


def _from_filenames(root: Path, files: list[Path], *, forced: bool) -> ImageSet | None:
    labels_text: list[str | None] = []
    for f in files:
        m = _FILENAME_LABEL.match(f.name)
        labels_text.append(m.group("label").lower() if m else None)
    matched = [t for t in labels_text if t is not None]
    distinct = set(matched)
    # Detection needs every file to match and at least two labels; forcing skips the check.
    if not forced and (len(matched) != len(files) or len(distinct) < 2):
        return None
    if forced and len(distinct) < 2:
        raise DataError(f"{root}: file names give {len(distinct)} label(s) {sorted(distinct)}; need at least 2")
    classes = sorted(distinct)
    pairs = [(f, classes.index(t)) for f, t in zip(files, labels_text) if t is not None]
    return ImageSet([p for p, _ in pairs], [y for _, y in pairs], classes, str(root))


def _labeled_or_not(folder: Path, classes: list[str]) -> ImageSet:
    subdirs = sorted(d for d in folder.iterdir() if d.is_dir() and _visible(d.name))
    if subdirs:
        return _align(_from_class_folders(folder, subdirs), classes)
    return ImageSet([f for f in list_files(folder) if is_image_name(f)], [], list(classes), str(folder))


def _align(s: ImageSet, classes: list[str]) -> ImageSet:
    return s.with_classes(classes) if s.classes != classes else s


def _from_csv(path: Path) -> ImageSet:
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in (reader.fieldnames or [])]
            lower = {h.lower(): h for h in header}
            pcol = next((lower[c] for c in PATH_COLUMNS if c in lower), None)
            lcol = next((lower[c] for c in LABEL_COLUMNS if c in lower), None)
            if pcol is None or lcol is None:
                raise DataError(
                    f"{path}: CSV needs a path column ({'/'.join(PATH_COLUMNS)}) and a label column "
                    f"({'/'.join(LABEL_COLUMNS)}); received columns {header}"
                )
            rows = [(r[pcol], r[lcol]) for r in reader]
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a UTF-8 CSV file ({exc.reason})") from None
    rows = [(p.strip(), str(lab).strip()) for p, lab in rows if p and str(lab).strip()]
    if not rows:
        raise DataError(f"{path}: CSV has no rows with both a path and a label")
    classes = sorted({lab for _, lab in rows})
    if len(classes) < 2:
        raise DataError(f"{path}: CSV has 1 label ({classes[0]}); a classifier needs at least 2 classes")
    base = path.parent
    paths = [Path(p) if Path(p).is_absolute() else base / p for p, _ in rows]
    return ImageSet(paths, [classes.index(lab) for _, lab in rows], classes, str(path))
