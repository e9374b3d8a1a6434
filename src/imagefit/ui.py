"""Progress bars and messages (rich), silent when progress is off."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True, highlight=False)


def plain(text: object) -> str:
    """``text`` safe to print: rich markup escaped, non-UTF-8 bytes as ``\\xff``.

    File names come from users' folders: ``x[/].jpg`` would be a markup error
    and ``b"\\xff.jpg"`` (held as a lone surrogate) an encoding error on a
    strict stream; either would crash the listing of skipped files.
    """
    from rich.markup import escape

    s = str(text)
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        s = s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return escape(s)


class UI:
    """Where the library reports progress; ``enabled=False`` prints nothing."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled

    def info(self, message: str) -> None:
        """One line of status."""
        if self.enabled:
            console.print(message)

    def warn(self, message: str) -> None:
        """One line of warning, in yellow; ``message`` is plain text (markup in file names is shown as is)."""
        if self.enabled:
            console.print(f"[yellow]warning: {plain(message)}[/]")

    @contextmanager
    def task(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        """A progress bar with ETA; yields ``advance(n)``."""
        if not self.enabled or total <= 0:
            yield lambda n: None
            return
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=console, transient=not sys.stderr.isatty()) as bar:
            tid = bar.add_task(description, total=total)
            yield lambda n: bar.advance(tid, n)
