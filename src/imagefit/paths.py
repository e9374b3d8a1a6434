"""Where imagefit keeps caches, and atomic file writes."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .errors import OutputError


def cache_root() -> Path:
    """``$IMAGEFIT_CACHE``, else ``$XDG_CACHE_HOME/imagefit``, else ``~/.cache/imagefit``."""
    env = os.environ.get("IMAGEFIT_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg) / "imagefit" if xdg else Path.home() / ".cache" / "imagefit"


def check_writable(folder: Path, need_bytes: int = 200 * 2**20) -> None:
    """Fail before any work if ``folder`` cannot be written or its disk is nearly full.

    Creates ``folder`` (and its parents) if missing; the probe is an anonymous
    temporary file, gone when closed, so nothing is left behind.

    Raises:
        OutputError: with the reason.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder) as probe:
            probe.write(b"ok")
    except OSError as exc:
        raise OutputError(f"cannot write to output folder {folder}: {exc.strerror or exc}") from None
    free = shutil.disk_usage(folder).free
    if free < need_bytes:
        raise OutputError(f"only {free / 2**20:.0f} MiB free under {folder}; a run needs about {need_bytes / 2**20:.0f} MiB")


def atomic_write_bytes(path: str | Path, data: bytes, *, durable: bool = True) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename.

    A crash leaves either the old file or the new one, never half of one.
    ``durable=False`` skips the fsync: still atomic for a crashed process, and
    what a cache that can be recomputed wants (an fsync per photo halves the
    throughput of a feature pass); after a power loss such an entry may be
    empty, which readers treat as a miss.
    """
    path = Path(path)
    tmp = None
    try:
        fd, tmp = _create_temp(path)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, OutputError):
            # A full disk or read-only folder mid-run: one clear line from the CLI, not a traceback.
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
        raise
    return path


def _create_temp(path: Path) -> tuple[int, str]:
    """Create a new temporary file beside ``path``, making its folder if missing.

    Plain ``os.open`` calls instead of ``mkdir`` + ``tempfile.mkstemp`` +
    ``fchmod``: a feature pass writes one small file per photo, and this takes
    several times less time per file (see BENCHMARKS.md). ``O_EXCL`` with a random name is mkstemp's own
    guarantee; mode 0666 less the umask is what any new file gets.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    made_dir = False
    while True:
        tmp = os.path.join(path.parent, f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue  # 48 random bits collided: draw again
        except FileNotFoundError:
            if made_dir:
                raise
            path.parent.mkdir(parents=True, exist_ok=True)
            made_dir = True


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Text version of :func:`atomic_write_bytes` (UTF-8)."""
    # surrogateescape: a file name that is not valid UTF-8 (b"\xff.jpg", which
    # Python holds as "\udcff.jpg") is written as its original bytes instead of
    # crashing the CSV or report that mentions it.
    return atomic_write_bytes(path, text.encode("utf-8", errors="surrogateescape"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Write JSON atomically, pretty-printed."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_jsonable) + "\n")


def _jsonable(o: Any) -> Any:
    import numpy as np

    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")
