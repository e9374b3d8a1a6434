"""Walk a data folder as discovery reads it: every photo once, every folder once, never a run folder.

``os.walk(followlinks=True)`` follows a link back to a parent folder until the
path is too long: a loop ``cats/loop -> ..`` turned 80 photos into 3,281
items, dog photos labelled cats. Here a folder link is followed at most once,
never into a folder the layout reads at its own place (a class or split
folder) nor into one that holds the folder being read (a loop); a file is
counted once, whatever the links and hard links that reach it; and what was
left out is recorded with the reason, so that the caller can say so.
"""

from __future__ import annotations

import os
from pathlib import Path

from .load import SkipLog

# A folder holding one of these is a run folder (written by ``imagefit train``), never photos.
RUN_MARKERS = ("imagefit.json",)
_SYSTEM_NAMES = frozenset({"Thumbs.db", "desktop.ini", "__MACOSX", "$RECYCLE.BIN", "System Volume Information"})


def visible(name: str) -> bool:
    """Whether a file or folder name is the user's (not hidden, not an OS's own)."""
    return not name.startswith(".") and name not in _SYSTEM_NAMES


def is_run_folder(folder: Path) -> bool:
    """Whether ``folder`` is an imagefit run folder (it holds ``imagefit.json``)."""
    return any((folder / m).is_file() for m in RUN_MARKERS)


def _inside(path: str, folder: str) -> bool:
    """Whether real path ``path`` is ``folder`` or below it."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


class Walker:
    """One discovery pass: the folders it reads, the files it has counted, what it left out.

    Args:
        skipped: Receives ``(path, reason)`` for every link, duplicate file or
            run folder that is left out (hidden names are left out silently).
    """

    def __init__(self, skipped: SkipLog | None = None):
        self.skipped = skipped if skipped is not None else SkipLog()
        self._claimed: list[str] = []  # real paths of the folders the layout reads at their own place
        self._followed: list[str] = []  # real paths of folder links already followed
        self._files: dict[tuple[int, int], Path] = {}  # (device, inode) -> first path counted

    def claim(self, folders: list[Path]) -> None:
        """Declare folders the layout reads itself (class or split folders): links into them are not followed."""
        self._claimed.extend(os.path.realpath(f) for f in folders)

    def subfolders(self, folder: Path) -> list[Path]:
        """Visible subfolders of ``folder``, sorted; run folders are left out and recorded."""
        out = []
        for d in sorted(folder.iterdir()):
            if not visible(d.name) or not d.is_dir():
                continue
            if is_run_folder(d):
                self.skipped.add(d, "run folder (holds imagefit.json): not read as photos")
                continue
            out.append(d)
        return out

    def files(self, folder: Path) -> list[Path]:
        """Every visible file below ``folder``, recursively, sorted, each counted once in this pass.

        Broken links are kept (reading them reports "broken symlink").
        """
        out: list[Path] = []
        self._walk(folder, [os.path.realpath(folder)], out)
        return out

    def _walk(self, folder: Path, stack: list[str], out: list[Path]) -> None:
        try:
            entries = sorted(folder.iterdir())
        except OSError as exc:
            self.skipped.add(folder, f"folder not readable ({exc.strerror or exc})")
            return
        dirs = []
        for p in entries:
            if not visible(p.name):
                continue
            if p.is_dir():
                dirs.append(p)
            elif self._count_file(p):
                out.append(p)
        for d in dirs:
            if is_run_folder(d):
                self.skipped.add(d, "run folder (holds imagefit.json): not read as photos")
                continue
            real = os.path.realpath(d)
            reason = self._refuse_folder(d, real, stack)
            if reason:
                self.skipped.add(d, reason)
                continue
            if d.is_symlink():
                self._followed.append(real)
            self._walk(d, [*stack, real], out)

    def _refuse_folder(self, d: Path, real: str, stack: list[str]) -> str | None:
        """Why folder ``d`` (real path ``real``) must not be read here, or None."""
        if any(_inside(s, real) for s in stack):
            return f"link loop: leads back to {real}, which is being read"
        if not d.is_symlink():
            return None
        if any(_inside(real, c) or _inside(c, real) for c in self._claimed):
            return f"link to {real}, which this data set reads at its own place"
        if any(_inside(real, f) for f in self._followed):
            return f"link to {real}, already read through another link"
        return None

    def _count_file(self, p: Path) -> bool:
        """Whether ``p`` is a file not counted before in this pass (recording it if so)."""
        try:
            st = p.stat()
        except OSError:
            return True  # a broken link or unreadable entry: kept, so that reading it reports why
        key = (st.st_dev, st.st_ino)
        first = self._files.get(key)
        if first is not None:
            self.skipped.add(p, f"same file as {first} (counted once)")
            return False
        if p.is_symlink() and any(_inside(os.path.realpath(p), c) for c in self._claimed):
            # A link to a photo that the layout reads at its own place: that place gives its label.
            self.skipped.add(p, f"link to {os.path.realpath(p)}, which this data set reads at its own place")
            return False
        self._files[key] = p
        return True
