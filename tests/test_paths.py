"""paths.check_writable: fails before any work, leaves nothing behind."""

from __future__ import annotations

import shutil
from collections import namedtuple
from pathlib import Path

import pytest

from imagefit.errors import OutputError
from imagefit.paths import check_writable


def test_creates_folder_and_leaves_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "a" / "b"
    check_writable(folder)
    assert folder.is_dir() and list(folder.iterdir()) == []


def test_file_as_parent(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="cannot write to output folder"):
        check_writable(tmp_path / "f" / "run")


def test_disk_nearly_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10 * 2**30, 10 * 2**30 - 2**20, 2**20))
    with pytest.raises(OutputError, match="only 1 MiB free"):
        check_writable(tmp_path)
