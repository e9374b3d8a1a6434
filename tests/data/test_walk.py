"""Walker: folder links followed once, files counted once, run and hidden folders never read."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from imagefit.data.walk import Walker, is_run_folder, visible

pytestmark = pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symbolic links")


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(path.name.encode())
    return path


def test_visible_names() -> None:
    assert visible("cats") and visible("a.jpg")
    assert not visible(".git") and not visible("Thumbs.db") and not visible("__MACOSX")


def test_loop_and_claimed_folders(tmp_path: Path) -> None:
    _touch(tmp_path / "a" / "1.jpg")
    _touch(tmp_path / "b" / "2.jpg")
    (tmp_path / "a" / "up").symlink_to("..")
    (tmp_path / "a" / "self").symlink_to(".")
    (tmp_path / "a" / "to-b").symlink_to(tmp_path / "b", target_is_directory=True)
    w = Walker()
    w.claim([tmp_path / "a", tmp_path / "b"])
    assert [p.name for p in w.files(tmp_path / "a")] == ["1.jpg"]
    assert [p.name for p in w.files(tmp_path / "b")] == ["2.jpg"]
    reasons = dict(w.skipped.items)
    assert "loop" in reasons[str(tmp_path / "a" / "up")] and "loop" in reasons[str(tmp_path / "a" / "self")]
    assert "own place" in reasons[str(tmp_path / "a" / "to-b")]


def test_unclaimed_link_followed_once_and_broken_link_kept(tmp_path: Path) -> None:
    _touch(tmp_path / "ext" / "x.jpg")
    _touch(tmp_path / "d" / "y.jpg")
    (tmp_path / "d" / "l1").symlink_to(tmp_path / "ext", target_is_directory=True)
    (tmp_path / "d" / "l2").symlink_to(tmp_path / "ext", target_is_directory=True)
    (tmp_path / "d" / "broken.jpg").symlink_to(tmp_path / "nowhere.jpg")
    w = Walker()
    got = [p.relative_to(tmp_path).as_posix() for p in w.files(tmp_path / "d")]
    assert got == ["d/broken.jpg", "d/y.jpg", "d/l1/x.jpg"]
    assert "already read" in dict(w.skipped.items)[str(tmp_path / "d" / "l2")]


def test_run_folders(tmp_path: Path) -> None:
    _touch(tmp_path / "d" / "run" / "imagefit.json")
    _touch(tmp_path / "d" / "run" / "report.png")
    _touch(tmp_path / "d" / "cls" / "a.png")
    assert is_run_folder(tmp_path / "d" / "run") and not is_run_folder(tmp_path / "d" / "cls")
    w = Walker()
    assert [d.name for d in w.subfolders(tmp_path / "d")] == ["cls"]
    assert [p.name for p in Walker().files(tmp_path / "d")] == ["a.png"]
    assert "run folder" in dict(w.skipped.items)[str(tmp_path / "d" / "run")]
