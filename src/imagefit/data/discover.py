"""Find labeled photos in the layouts users have on disk, and say which layout was read.

Supported layouts of ``DATA`` (each detected layout is named in
:attr:`Discovered.layout` and described in one line in :attr:`Discovered.description`):

* a folder with one subfolder per class (``cats/``, ``dogs/``);
* a folder with ``train/`` and optionally ``valid|validation|validate|val|dev/`` and
  ``test/`` (labeled class folders, or an unlabeled test set: loose images or one subfolder);
* class folders that carry the split in their name (``cats-train/``, ``train_dogs/``);
* a flat folder whose file names carry the label (Kaggle's ``cat.0.jpg``; other
  names only with ``labels_from_filename``);
* a CSV file with a path column and a label column.

Folder links are followed once, each file is counted once, run folders and
hidden folders are never read; what was left out is in :attr:`Discovered.skipped`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError
from .labels import FILENAME_LABEL, LABEL_COLUMNS, PATH_COLUMNS, Labeled, from_filenames, kaggle_names, read_csv
from .layout import SPLIT_NAMES, ClassSplitLayout, class_split_names, split_folders
from .load import SkipLog
from .walk import Walker, is_run_folder

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".ppm", ".pgm"})
VAL_NAMES = SPLIT_NAMES["val"]
# kaggle-prep reads labels from names by the same rule as labels_from_filename.
_FILENAME_LABEL = FILENAME_LABEL
__all__ = ["LABEL_COLUMNS", "PATH_COLUMNS", "Discovered", "ImageSet", "discover", "list_files", "list_images"]


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
    """What :func:`discover` found: a train set and, when the layout has them, val and test.

    Attributes:
        layout: Short name of the layout read: ``"class folders"``, ``"train/val/test"``,
            ``"class-split names"``, ``"labels from file names"`` or ``"csv"``.
        description: One line saying what was read and how, for ``inspect`` and ``train`` to print.
        skipped: Entries left out, each with its reason (link loops, files reached twice,
            run folders, photos outside any class folder, names without a label).
        notes: Other things the user should know (dropped CSV rows).
    """

    train: ImageSet
    val: ImageSet | None = None
    test: ImageSet | None = None
    layout: str = ""
    ignored: list[Path] = field(default_factory=list)
    description: str = ""
    skipped: SkipLog = field(default_factory=SkipLog)
    notes: list[str] = field(default_factory=list)


def is_image_name(path: Path) -> bool:
    """Whether ``path`` has an image file extension."""
    return path.suffix.lower() in IMAGE_EXTENSIONS


def list_files(folder: Path, skipped: SkipLog | None = None) -> list[Path]:
    """Every visible file below ``folder``, recursively, sorted, each once (broken links included).

    Folder links are followed at most once; loops, files reached twice and run
    folders are left out and recorded in ``skipped``.
    """
    return Walker(skipped).files(folder)


def list_images(paths: list[str | Path], skipped: SkipLog | None = None) -> list[Path]:
    """Expand files and folders (recursively) into image paths, for prediction.

    Files named directly are kept whatever their extension, so that a bad file
    is reported rather than silently dropped; inside folders only image
    extensions are taken, each file once, never from a run folder (left-out
    entries go to ``skipped``).
    """
    walker = Walker(skipped)
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            out.extend(f for f in walker.files(p) if is_image_name(f))
        elif p.exists() or p.is_symlink():
            out.append(p)
        else:
            raise DataError(f"path not found: {p}")
    return out


def discover(data: str | Path, *, labels_from_filename: bool = False, label_regex: str | None = None) -> Discovered:
    """Find the labeled images of ``data``, whatever its layout.

    Args:
        data: A folder or a CSV file.
        labels_from_filename: Read labels from file names by
            :data:`~imagefit.data.labels.FILENAME_LABEL_RULE` (``great_pyrenees_10.jpg`` -> great_pyrenees).
        label_regex: A regular expression for file-name labels (its group ``label``,
            else its first group); implies ``labels_from_filename``.

    Returns:
        The train set, plus val/test sets when the layout holds them, the layout's
        one-line description and what was left out.

    Raises:
        DataError: if the path is missing, empty, holds no usable layout, or an
            ambiguous one.
    """
    root = Path(data)
    if not root.exists():
        raise DataError(f"data not found: {root}")
    if root.is_file():
        if root.suffix.lower() != ".csv":
            raise DataError(f"{root}: expected a folder or a .csv file, received a {root.suffix or 'plain'} file")
        return _from_csv(root)
    walker = Walker()
    if labels_from_filename or label_regex:
        found = _from_names(root, walker, forced=True, regex=label_regex)
    else:
        found = _from_folder(root, walker, top=True)
    found.skipped = walker.skipped
    return found


def _from_folder(root: Path, w: Walker, *, top: bool) -> Discovered:
    subdirs = w.subfolders(root)
    if top:
        splits = split_folders(root, subdirs)
        if splits is not None:
            return _split_layout(root, splits, subdirs, w)
        named = class_split_names(root, subdirs)
        if named is not None:
            return _class_split_layout(root, named, w)
    if subdirs:
        train = _from_class_folders(root, [(d.name, d) for d in subdirs], w)
        return Discovered(train=train, layout="class folders", description=f"class folders: {_classes_line(train.classes)}")
    return _from_names(root, w, forced=False)


def _classes_line(classes: list[str], most: int = 8) -> str:
    shown = ", ".join(classes[:most]) + (f", ... ({len(classes) - most} more)" if len(classes) > most else "")
    return f"{len(classes)} classes ({shown})"


def _skip_loose_images(folder: Path, w: Walker, where: str) -> None:
    """Photos lying next to the folders a layout reads are not labeled by it: say so."""
    for f in sorted(folder.iterdir()):
        if f.is_file() and is_image_name(f) and not f.name.startswith("."):
            w.skipped.add(f, f"not in {where}")


def _from_class_folders(root: Path, folders: list[tuple[str, Path]], w: Walker, min_classes: int = 2) -> ImageSet:
    """One class per ``(name, folder)``; each folder's files, recursively."""
    w.claim([d for _, d in folders])
    _skip_loose_images(root, w, "a class folder")
    paths: list[Path] = []
    labels: list[int] = []
    classes: list[str] = []
    for name, d in folders:
        files = w.files(d)
        if not files:
            if any(is_run_folder(x) for x in d.iterdir() if x.is_dir()):
                w.skipped.add(d, "holds only run folders: not a class")
                continue
            raise DataError(f"class folder '{d.name}' in {root} is empty; remove it or add images")
        paths.extend(files)
        labels.extend([len(classes)] * len(files))
        classes.append(name)
    if len(classes) < min_classes:
        raise DataError(f"{root}: found {len(classes)} class folder ({', '.join(classes)}); a classifier needs at least 2 classes")
    return ImageSet(paths, labels, classes, str(root))


def _split_layout(root: Path, splits: dict[str, Path], subdirs: list[Path], w: Walker) -> Discovered:
    w.claim(list(splits.values()))
    for d in subdirs:
        if d not in splits.values():
            w.skipped.add(d, "not read: in a train/val/test layout only the split folders hold photos")
    _skip_loose_images(root, w, "train/, a validation folder or test/")
    inner = _from_folder(splits["train"], w, top=False)
    train = inner.train
    parts = [f"train from {splits['train'].name}/ ({inner.description})"]
    val = None
    if "val" in splits:
        val = _align(_from_folder(splits["val"], w, top=False).train, train.classes)
        parts.append(f"validation from {splits['val'].name}/ ({len(val)} files)")
    test = None
    if "test" in splits:
        test = _test_set(splits["test"], train.classes, w)
        kind = "labeled" if test.labeled else "unlabeled"
        parts.append(f"test from {splits['test'].name}/ ({kind}, {len(test)} files)")
    return Discovered(train=train, val=val, test=test, layout="train/val/test", description="split folders: " + "; ".join(parts))


def _test_set(folder: Path, classes: list[str], w: Walker) -> ImageSet:
    """A test folder: class folders named like train's, or an unlabeled set (loose images or one subfolder)."""
    subdirs = w.subfolders(folder)
    unknown = [d.name for d in subdirs if d.name not in classes]
    if subdirs and not unknown:
        return _align(_from_class_folders(folder, [(d.name, d) for d in subdirs], w, min_classes=1), classes)
    if len(subdirs) > 1:
        raise DataError(
            f"{folder}: folders {', '.join(unknown[:5])} are not classes of the training data ({', '.join(classes)}); "
            "a test folder holds class folders named like train's, or unlabeled photos (loose or in one subfolder)"
        )
    w.claim([folder])
    return ImageSet([f for f in w.files(folder) if is_image_name(f)], [], list(classes), str(folder))


def _class_split_layout(root: Path, named: ClassSplitLayout, w: Walker) -> Discovered:
    w.claim([d for by_class in named.splits.values() for d in by_class.values()])
    _skip_loose_images(root, w, "a <class>-<split> folder")
    classes = named.classes
    sets = {}
    for split, by_class in named.splits.items():
        s = _from_class_folders(root, sorted(by_class.items()), w, min_classes=1)
        sets[split] = s if split == "train" else _align(s, classes)
    return Discovered(
        train=sets["train"], val=sets.get("val"), test=sets.get("test"), layout="class-split names", description=named.describe()
    )


def _from_names(root: Path, w: Walker, *, forced: bool, regex: str | None = None) -> Discovered:
    w.claim([root])
    files = [f for f in w.files(root) if is_image_name(f)]
    if not files:
        raise DataError(f"{root}: no images found (expected class subfolders, train/, a CSV, or cat.0.jpg-style names)")
    if forced:
        labeled = from_filenames(files, regex=regex)
        for path, reason in labeled.left_out:
            w.skipped.add(path, reason)
        how = f"labels from file names by the rule {labeled.rule}"
    else:
        found = kaggle_names(files)
        if found is None:
            raise DataError(
                f"{root}: {len(files)} images but no labels: put them in one subfolder per class, give a CSV, "
                "or name them <label>.<number>.<ext> like cat.0.jpg; other names (IMG_1000.jpg) are read as labels "
                "only with --labels-from-filename"
            )
        labeled = found
        how = "labels from file names: every name is <label>.<number>.<ext> (Kaggle's naming)"
    train = _from_labeled(root, labeled)
    return Discovered(train=train, layout="labels from file names", description=f"{how}: {_classes_line(train.classes)}")


def _from_labeled(source: Path, labeled: Labeled) -> ImageSet:
    classes = sorted(set(labeled.labels))
    if len(classes) < 2:
        raise DataError(f"{source}: {labeled.rule} gives {len(classes)} label(s) {classes}; need at least 2")
    index = {c: i for i, c in enumerate(classes)}
    return ImageSet(list(labeled.paths), [index[t] for t in labeled.labels], classes, str(source))


def _align(s: ImageSet, classes: list[str]) -> ImageSet:
    return s.with_classes(classes) if s.classes != classes else s


def _from_csv(path: Path) -> Discovered:
    labeled = read_csv(path)
    train = _from_labeled(path, labeled)
    counts = Counter(labeled.labels)
    line = f"CSV {path.name}: {len(train)} rows, {_classes_line(sorted(counts))}"
    return Discovered(train=train, layout="csv", description=line, notes=list(labeled.notes))
