"""Progress bars and messages (rich), silent when progress is off."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

# soft_wrap: a long line (a run path, "ECE 0.0365 -> 0.0220") is written whole and left to the
# terminal, never broken by rich mid-message at a space.
console = Console(stderr=True, highlight=False, soft_wrap=True)

# The per-epoch table, Keras/fastai style; 66 columns wide, so it fits an 80-column terminal.
EPOCH_HEADER = f"{'epoch':>5}  {'phase':<9} {'loss':>7} {'acc':>6} {'val_loss':>8} {'val_acc':>7} {'lr':>9} {'sec':>5}"
PHASE_LABELS = {"head": "head", "backbone": "fine-tune", "continue": "continue", "refit": "refit"}


def auto_progress() -> bool:
    """Progress on by default when someone watches: stderr is a terminal, or this runs in Jupyter."""
    from rich.console import _is_jupyter

    return bool(sys.stderr.isatty() or _is_jupyter())


def _num(value: float | None, width: int, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return f"{'-':>{width}}"
    return f"{value:>{width}.{digits}f}"


def epoch_row(epoch: int, phase: str, logs: dict[str, float], seconds: float) -> str:
    """One line of the epoch table (``epoch`` counted from 1)."""
    label = PHASE_LABELS.get(phase, phase)[:9]
    lr = logs.get("lr")
    lr_text = f"{lr:>9.2g}" if lr is not None else f"{'-':>9}"
    return (
        f"{epoch:>5}  {label:<9} {_num(logs.get('loss'), 7, 4)} {_num(logs.get('accuracy'), 6, 4)} "
        f"{_num(logs.get('val_loss'), 8, 4)} {_num(logs.get('val_accuracy'), 7, 4)} {lr_text} {seconds:>5.1f}"
    )


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
        # Off a terminal (a log file, a pipe) a bar cannot redraw: rich would leave an empty line per bar.
        if not self.enabled or total <= 0 or not (console.is_terminal or console.is_jupyter):
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
        # transient: the bar disappears when done, leaving no blank line in the epoch table.
        with Progress(*columns, console=console, transient=True) as bar:
            tid = bar.add_task(description, total=total)
            yield lambda n: bar.advance(tid, n)
