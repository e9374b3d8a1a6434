"""The data of one training run: train and validation sets, and what the user must be told about them.

:func:`prepare` finds the layout, picks the validation set (``--val``, the
layout's own, or a seeded stratified split of train), and collects warnings
(entries left out, dropped CSV rows, photos shared between splits, a run
folder inside the data) as messages: nothing here prints, the CLI and the
API decide how to show them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError
from .discover import Discovered, ImageSet, discover
from .duplicates import Duplicates, find_duplicates
from .load import SkipLog
from .split import stratified_split

if TYPE_CHECKING:
    from ..config import RunConfig


@dataclass
class Prepared:
    """Train and validation sets of a run, how they were found, and the warnings to show.

    Attributes:
        train, val: The sets to train and validate on (val in train's classes).
        test: The layout's test set, labeled or not (``test.labeled``), or None.
        layout: Short layout name (:attr:`Discovered.layout`).
        description: One line: the layout read and where validation comes from.
        skipped: Entries left out of the data, with reasons (links, duplicates, run folders...).
        duplicates: Photos found in two splits (content digest), or None when not checked.
        warnings: Everything the user should read before trusting the numbers, one line each.
    """

    train: ImageSet
    val: ImageSet
    test: ImageSet | None = None
    layout: str = ""
    description: str = ""
    skipped: SkipLog = field(default_factory=SkipLog)
    duplicates: Duplicates | None = None
    warnings: list[str] = field(default_factory=list)


def out_inside_data(out: str | Path | None, data: str | Path) -> str | None:
    """A warning when the run folder ``out`` is inside the data folder ``data``, else None.

    Run folders are never read as photos, but a run folder among the photos
    is easily copied, zipped or uploaded with them.
    """
    if out is None:
        return None
    root = Path(data)
    if root.is_file():
        root = root.parent
    real_out, real_root = os.path.realpath(out), os.path.realpath(root)
    if real_out == real_root or real_out.startswith(real_root.rstrip(os.sep) + os.sep):
        return f"the run folder {out} is inside the data folder {data}: it is never read as photos, but keep runs outside the data"
    return None


def skipped_summary(skipped: SkipLog, most: int = 3) -> str | None:
    """One line for the entries left out of the data (``None`` when nothing was)."""
    if not skipped:
        return None
    shown = "; ".join(f"{p}: {r}" for p, r in skipped.items[:most])
    more = f"; ... ({len(skipped) - most} more)" if len(skipped) > most else ""
    return f"left out {len(skipped)} entr{'y' if len(skipped) == 1 else 'ies'} of the data: {shown}{more}"


def _label_regex(config: RunConfig) -> str | None:
    # DataConfig.filename_label_regex is read when the config has it (it is added with this module).
    regex = getattr(config.data, "filename_label_regex", None)
    return str(regex) if regex else None


def prepare(
    data: str | Path,
    val: str | Path | None,
    config: RunConfig,
    *,
    out: str | Path | None = None,
    check_duplicates: bool = True,
    label_regex: str | None = None,
) -> Prepared:
    """Find train and validation sets: explicit ``val``, the layout's own, or a stratified split.

    Args:
        data: Training data (any layout :func:`~imagefit.data.discover.discover` reads).
        val: Separate validation data, or None.
        config: The run's settings (``data.labels_from_filename``, ``data.val_split``, ``train.seed``).
        out: The run folder, to warn when it lies inside ``data``.
        check_duplicates: Look for photos present in two splits (reads every file once).
        label_regex: File-name label rule (default: ``config.data.filename_label_regex`` when set).

    Raises:
        ConfigError: no validation data and ``val_split`` is 0.
        DataError: unusable or ambiguous data.
    """
    regex = label_regex or _label_regex(config)
    found = discover(data, labels_from_filename=config.data.labels_from_filename, label_regex=regex)
    train_set = found.train
    notes = list(found.notes)
    skipped = SkipLog()
    skipped.extend(found.skipped)
    if val is not None:
        vfound = discover(val, labels_from_filename=config.data.labels_from_filename, label_regex=regex)
        val_set = (vfound.val or vfound.train).with_classes(train_set.classes)
        skipped.extend(vfound.skipped)
        notes.extend(vfound.notes)
        source = f"validation from {val}"
    elif found.val is not None:
        val_set = found.val
        source = ""  # the description already names the layout's validation folder
    else:
        if config.data.val_split <= 0:
            raise ConfigError("a validation set is needed: pass --val DATA or --val-split > 0")
        train_set, val_set = stratified_split(train_set, config.data.val_split, config.train.seed)
        source = f"validation: {config.data.val_split:.0%} of each class, split with seed {config.train.seed}"
    prepared = Prepared(
        train=train_set,
        val=val_set,
        test=found.test,
        layout=found.layout,
        description="; ".join(x for x in (found.description, source) if x),
        skipped=skipped,
    )
    prepared.warnings = _warnings(prepared, found, notes, data, out, check_duplicates)
    return prepared


def _warnings(p: Prepared, found: Discovered, notes: list[str], data: str | Path, out: str | Path | None, check: bool) -> list[str]:
    warnings = list(notes)
    line = skipped_summary(p.skipped)
    if line:
        warnings.append(line)
    inside = out_inside_data(out, data)
    if inside:
        warnings.append(inside)
    if check:
        splits = {"train": p.train.paths, "val": p.val.paths}
        if p.test is not None:
            splits["test"] = p.test.paths
        p.duplicates = find_duplicates(splits)
        warnings.extend(p.duplicates.messages())
    return warnings


def prepare_data(
    data: str | Path,
    val: str | Path | None,
    config: RunConfig,
    *,
    out: str | Path | None = None,
    warn: Callable[[str], None] | None = None,
    info: Callable[[str], None] | None = None,
) -> tuple[ImageSet, ImageSet]:
    """``(train_set, val_set)`` of :func:`prepare`.

    ``info`` (when given) receives the one-line description of the layout read
    and of the validation set; ``warn`` receives each warning (and turns on the
    check for photos shared between splits).
    """
    prepared = prepare(data, val, config, out=out, check_duplicates=warn is not None)
    if info is not None:
        info(prepared.description)
    if warn is not None:
        for message in prepared.warnings:
            warn(message)
    return prepared.train, prepared.val
