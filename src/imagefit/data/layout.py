"""Which folder names mean a split, and folders that carry the split in the class name.

Split folders (``train/``, ``validate/``, ``test/``) and class-split names
(``cats-train/``, ``train_dogs/``) are recognised from one vocabulary. A set
of folders that only partly follows a layout is an error naming the folders
that do not fit: it is never guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError

# Folder names of each split, as the Keras, Kaggle and Hugging Face layouts write them (case ignored).
SPLIT_NAMES = {
    "train": ("train", "training", "training_set", "train_set"),
    "val": ("valid", "validation", "val", "validate", "dev", "validation_set", "valid_set", "val_set"),
    "test": ("test", "testing", "test_set"),
}
_SPLIT_OF = {name: split for split, names in SPLIT_NAMES.items() for name in names}
_ANY_SPLIT = "|".join(sorted((re.escape(n) for n in _SPLIT_OF), key=len, reverse=True))
_CLASS_SPLIT = re.compile(rf"^(?P<cls>.+?)[-_ ](?P<split>{_ANY_SPLIT})$", re.IGNORECASE)
_SPLIT_CLASS = re.compile(rf"^(?P<split>{_ANY_SPLIT})[-_ ](?P<cls>.+)$", re.IGNORECASE)


def split_of(name: str) -> str | None:
    """``"train"``, ``"val"`` or ``"test"`` when a folder name means that split, else None."""
    return _SPLIT_OF.get(name.lower())


def split_folders(root: Path, subdirs: list[Path]) -> dict[str, Path] | None:
    """The split folders among ``subdirs`` when they include a train folder, else None.

    Raises:
        DataError: two folders name the same split (``val/`` and ``validation/``),
            or split folders (``test/``) sit next to other folders without a train folder.
    """
    found: dict[str, list[Path]] = {}
    for d in subdirs:
        split = split_of(d.name)
        if split:
            found.setdefault(split, []).append(d)
    for split, dirs in found.items():
        if len(dirs) > 1:
            names = " and ".join(f"{d.name}/" for d in dirs)
            raise DataError(f"{root}: ambiguous layout: {names} both name the {split} split; keep one")
    if found and "train" not in found:
        others = [d.name for d in subdirs if split_of(d.name) is None]
        if others:
            named = ", ".join(f"{d[0].name}/" for d in found.values())
            raise DataError(
                f"{root}: ambiguous layout: {named} name a split but there is no train/ folder next to "
                f"{', '.join(others[:5])}; put the class folders under train/, or rename {named}"
            )
        return None
    return {split: dirs[0] for split, dirs in found.items()} if found else None


@dataclass
class ClassSplitLayout:
    """Folders named ``<class>-<split>``: the class folders of each split, and the naming seen."""

    splits: dict[str, dict[str, Path]] = field(default_factory=dict)  # split -> class -> folder
    patterns: list[str] = field(default_factory=list)  # e.g. ["<class>-<split>"]

    @property
    def classes(self) -> list[str]:
        """The training classes, sorted."""
        return sorted(self.splits.get("train", {}))

    def describe(self) -> str:
        """One line: the naming, the classes and the splits found."""
        splits = ", ".join(f"{s} ({len(c)} folders)" for s, c in self.splits.items())
        return f"class and split in the folder names ({' / '.join(self.patterns)}): classes {', '.join(self.classes)}; splits {splits}"


def _parse(name: str) -> tuple[str, str, str] | bool | None:
    """``(class, split, pattern)`` for a class-split name; None when none; False when both readings fit."""
    a, b = _CLASS_SPLIT.match(name), _SPLIT_CLASS.match(name)
    if a and b:
        return False
    m = a or b
    if m is None:
        return None
    sep = name[len(m.group("cls")) if m is a else len(m.group("split"))]
    pattern = f"<class>{sep}<split>" if m is a else f"<split>{sep}<class>"
    return m.group("cls"), _SPLIT_OF[m.group("split").lower()], pattern


def class_split_names(root: Path, subdirs: list[Path]) -> ClassSplitLayout | None:
    """The layout when every folder is named ``<class>-<split>`` / ``<split>-<class>`` / ``<class>_<split>``.

    None when the names do not look like that layout (a lone ``pre-test`` class
    folder among others does not).

    Raises:
        DataError: the names partly follow the layout, a name reads both ways
            (``train-test``), a class and split appear twice, or no train split.
    """
    parsed = {d: _parse(d.name) for d in subdirs}
    matched = {d: p for d, p in parsed.items() if isinstance(p, tuple)}
    if not matched:
        return None
    splits = {p[1] for p in matched.values()}
    classes = {p[0].lower() for p in matched.values()}
    looks_like_layout = "train" in splits or (len(matched) >= 2 and len(classes) >= 2 and len(splits) == 1)
    if not looks_like_layout:
        return None
    both = [d.name for d, p in parsed.items() if p is False]
    if both:
        raise DataError(f"{root}: ambiguous layout: {', '.join(both[:5])} can be read as <class>-<split> and as <split>-<class>; rename")
    misfits = [d.name for d, p in parsed.items() if p is None]
    if misfits:
        raise DataError(
            f"{root}: ambiguous layout: {len(matched)} folders are named <class>-<split> (e.g. {next(iter(matched)).name}) "
            f"but {', '.join(misfits[:5])} {'is' if len(misfits) == 1 else 'are'} not; rename or move them"
        )
    layout = ClassSplitLayout()
    for d, (cls, split, pattern) in sorted(matched.items(), key=lambda kv: kv[0].name):
        by_class = layout.splits.setdefault(split, {})
        twin = next((c for c in by_class if c.lower() == cls.lower()), None)
        if twin is not None:
            raise DataError(f"{root}: ambiguous layout: {by_class[twin].name}/ and {d.name}/ are both class {cls!r} of the {split} split")
        by_class[cls] = d
        if pattern not in layout.patterns:
            layout.patterns.append(pattern)
    if "train" not in layout.splits:
        names = ", ".join(d.name for d in matched)
        raise DataError(
            f"{root}: folders {names} name a split ({', '.join(sorted(splits))}) but none is a train split; "
            "add <class>-train folders, or rename the folders to the class names alone"
        )
    if len(layout.splits["train"]) < 2:
        raise DataError(f"{root}: the train split has {len(layout.splits['train'])} class folder(s); a classifier needs at least 2 classes")
    layout.splits = {s: layout.splits[s] for s in ("train", "val", "test") if s in layout.splits}
    return layout
