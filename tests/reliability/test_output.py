"""Issue 5, part 6: an output folder that cannot be written, or a full disk, fails before any work.

Root ignores permission bits, so read-only folders are also made with tricks
that fail for root too: a regular file used as a parent folder, and /proc.
"""

from __future__ import annotations

import shutil
from collections import namedtuple
from pathlib import Path

import pytest

import imagefit
from imagefit.cli import main
from imagefit.errors import OutputError
from imagefit.train import run as run_mod

from .conftest import IS_ROOT, train_tiny

Usage = namedtuple("Usage", "total used free")


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Fail the test if training gets as far as building a model or reading photos.

    (Listing the data folder may come first: it fails fast on missing data.)
    """

    def boom(*a: object, **k: object) -> None:
        raise AssertionError("work started before the output folder was checked")

    monkeypatch.setattr(run_mod, "create_backbone", boom)
    monkeypatch.setattr(run_mod, "extract", boom)


def _one_error_line(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code not in (0, None)
    # Status lines (the data layout) and warnings (simple_cnn trains from random filters) may come
    # first; the failure itself is one `error:` line, the last, and no traceback.
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], lines
    assert not any("Traceback" in ln for ln in lines), lines
    return errors[0]


def _unwritable(kind: str, tmp_path: Path) -> Path:
    if kind == "file-as-parent":
        blocker = tmp_path / "not-a-folder"
        blocker.write_text("a file where a folder should be")
        return blocker / "run"
    if kind == "proc":
        return Path("/proc/imagefit-test/run")
    if IS_ROOT:
        pytest.skip("running as root: a chmod 555 folder is still writable for root")
    ro = tmp_path / "readonly"
    ro.mkdir()
    ro.chmod(0o555)
    return ro / "run"


@pytest.mark.parametrize("kind", ["file-as-parent", "proc", "chmod"])
def test_unwritable_output_folder(kind: str, tiny_data: Path, tmp_path: Path, no_work: None, capsys: pytest.CaptureFixture[str]) -> None:
    out = _unwritable(kind, tmp_path)
    with pytest.raises(OutputError, match="cannot write to output folder"):
        imagefit.train(tiny_data, out=out, model="simple_cnn")
    line = _one_error_line(capsys, ["train", str(tiny_data), "--model", "simple_cnn", "--out", str(out)])
    assert "cannot write to output folder" in line and str(out) in line


def test_disk_full(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_work: None, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(shutil, "disk_usage", lambda p: Usage(10 * 2**30, 10 * 2**30 - 2**20, 2**20))
    with pytest.raises(OutputError, match="only 1 MiB free"):
        imagefit.train(tiny_data, out=tmp_path / "run", model="simple_cnn")
    line = _one_error_line(capsys, ["train", str(tiny_data), "--model", "simple_cnn", "--out", str(tmp_path / "run2")])
    assert "MiB free" in line
    assert not (tmp_path / "run" / "checkpoint").exists()


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny(tmp_path_factory.mktemp("outdata"), 4)


def test_predict_and_evaluate_check_out_first(
    small_run: Path, tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def boom(*a: object, **k: object) -> None:
        raise AssertionError("photos were read before --out was checked")

    monkeypatch.setattr(imagefit.Model, "features", boom)
    bad_out = _unwritable("file-as-parent", tmp_path) / "p.csv"
    line = _one_error_line(capsys, ["predict", str(small_run), str(tiny_data), "--out", str(bad_out)])
    assert "cannot write" in line
    line = _one_error_line(capsys, ["evaluate", str(small_run), str(tiny_data), "--out", str(bad_out.with_suffix(".json"))])
    assert "cannot write" in line
    monkeypatch.setattr(shutil, "disk_usage", lambda p: Usage(10 * 2**30, 10 * 2**30, 0))
    line = _one_error_line(capsys, ["predict", str(small_run), str(tiny_data), "--out", str(tmp_path / "p.csv")])
    assert "MiB free" in line


def test_disk_full_mid_run_is_one_clear_line(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The disk fills up after the start-up check passed: every write fails with ENOSPC."""
    import errno
    import os

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    line = _one_error_line(capsys, ["train", str(tiny_data), "--model", "simple_cnn", "--epochs", "1", "--out", str(tmp_path / "run")])
    assert line.startswith("error: cannot write ") and line.endswith("No space left on device")
    leftovers = [p for p in (tmp_path / "run").rglob("*") if p.name.endswith(".tmp")]
    assert not leftovers


# -- issue 17, outputs: predict never destroys a file and never writes an empty answer ---------------
@pytest.mark.parametrize("target", ["input-photo", "existing-text", "new-image-name", "folder"])
def test_predict_out_never_overwrites(
    target: str,
    small_run: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    make_img,  # type: ignore[no-untyped-def]
) -> None:
    photos = tmp_path / "pout"
    photo = make_img(photos / "a.jpg", (220, 40, 40))
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    out = {"input-photo": photo, "existing-text": notes, "new-image-name": tmp_path / "b.png", "folder": photos}[target]
    before = {p: p.read_bytes() for p in (photo, notes)}
    line = _one_error_line(capsys, ["predict", str(small_run), str(photos), "--out", str(out)])
    assert "invalid --out" in line and str(out) in line and ".csv" in line
    assert {p: p.read_bytes() for p in before} == before
    assert not (tmp_path / "b.png").exists()


def test_predict_nothing_readable_fails_and_keeps_old_csv(small_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a photo")
    old = tmp_path / "predictions.csv"
    old.write_text("path,label\nearlier.jpg,red\n")
    line = _one_error_line(capsys, ["predict", str(small_run), str(notes), "--out", str(old)])
    assert "nothing to predict" in line and "notes.txt" in line
    assert old.read_text() == "path,label\nearlier.jpg,red\n"
