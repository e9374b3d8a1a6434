"""layout.py: split names and <class>-<split> folder names (folders only, no photos needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagefit.data.layout import class_split_names, split_folders, split_of
from imagefit.errors import DataError


def test_split_of() -> None:
    assert [split_of(n) for n in ("Train", "validate", "dev", "VAL", "test_set", "cats")] == ["train", "val", "val", "val", "test", None]


def test_split_folders(tmp_path: Path) -> None:
    dirs = [tmp_path / n for n in ("train", "validate", "notes")]
    assert split_folders(tmp_path, dirs) == {"train": dirs[0], "val": dirs[1]}
    assert split_folders(tmp_path, [tmp_path / "cats", tmp_path / "dogs"]) is None
    with pytest.raises(DataError, match="val/ and dev/ both name the val split"):
        split_folders(tmp_path, [tmp_path / n for n in ("train", "val", "dev")])


def test_class_split_names(tmp_path: Path) -> None:
    dirs = [tmp_path / n for n in ("cats-train", "dogs-train", "train_birds", "cats-dev")]
    layout = class_split_names(tmp_path, dirs)
    assert layout is not None
    assert layout.classes == ["birds", "cats", "dogs"]
    assert set(layout.splits) == {"train", "val"} and list(layout.splits["val"]) == ["cats"]
    assert "<class>-<split>" in layout.describe() and "<split>_<class>" in layout.describe()
    assert class_split_names(tmp_path, [tmp_path / "cats", tmp_path / "dogs"]) is None


def test_class_split_needs_two_training_classes(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="at least 2 classes"):
        class_split_names(tmp_path, [tmp_path / "cats-train", tmp_path / "cats-test"])
