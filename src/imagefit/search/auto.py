"""``--model auto`` (the default): lite0's head first, a stronger backbone only where lite0 leaves room.

lite0 features and a linear head are fast and right for easy sets (Dogs vs.
Cats: over 99% of validation photos right), but several points short on
harder ones (look-alike classes). So after the lite0 head is trained:

* when it gets at least :data:`ENOUGH` of the validation photos right, the run
  is lite0, exactly as before (such sets pay nothing);
* otherwise, when lite1 and lite2 are installed, the composite
  ``lite0+lite1+lite2`` (their features concatenated, one backbone: see
  :mod:`imagefit.models.composite`) is extracted for the original photos and a
  linear head fitted on it, its ``C`` chosen on validation (:mod:`.linear`);
* the composite is kept only when it beats the lite0 head by the search's own
  rule (:func:`.runner.within_one_se`): lower validation log loss by more than
  one standard error of the per-photo differences, as it costs about five
  times as much to run.

Both candidates are in the run's leaderboard (``leaderboard.csv``). A named
``--model`` (``lite0`` included) trains exactly that backbone.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ..calibrate import log_loss, photo_log_losses
from ..config import AUTO_ENOUGH, FIRST_BACKBONE
from ..data.discover import ImageSet
from ..errors import ConfigError
from ..models.composite import SEPARATOR
from .leaderboard import Entry
from .linear import logits_to_probs
from .runner import SearchResult, Task, search, within_one_se

ENOUGH = AUTO_ENOUGH  # validation accuracy of the lite0 head from which a run stays lite0
FIRST = FIRST_BACKBONE
STRONGER = ("lite0", "lite1", "lite2")


def stronger_backbone() -> str | None:
    """``lite0+lite1+lite2`` when all three are installed, else None."""
    from ..models.hub import local_backbones

    have = set(local_backbones())
    return SEPARATOR.join(STRONGER) if all(m in have for m in STRONGER) else None


def per_photo_losses(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Log loss of each photo, from a head's logits (one logit: two classes, as :class:`Head`)."""
    return photo_log_losses(logits_to_probs(logits), labels)


def try_stronger(
    train_set: ImageSet,
    val_set: ImageSet,
    first_logits: np.ndarray,
    val_labels: np.ndarray,
    *,
    seed: int = 0,
    views: tuple[str, ...] = ("orig",),
    engine: str = "auto",
    device: str = "cpu",
    say: Callable[[str], None] = print,
    warn: Callable[[str], None] | None = None,
    task: Task | None = None,
) -> tuple[bool, SearchResult | None]:
    """Decide whether the lite0 head is enough, and if not fit the stronger backbone's head.

    Args:
        train_set: Training photos.
        val_set: Validation photos.
        first_logits: The lite0 head's validation logits, one row per readable validation photo.
        val_labels: Their labels.
        seed: The run's seed.
        views: Views extracted per training photo (``("orig", "flip")`` when the run augments).
        engine: Inference engine, as the run's.
        device: ``cpu`` or ``cuda``.
        say: Receives one line per step.
        warn: Receives the one line saying the stronger backbone failed (default: ``say``).
        task: Progress bars of the extraction (see :func:`.runner.search`).

    Returns:
        ``(keep_stronger, result)``: ``result`` is None when nothing was tried; otherwise its
        leaderboard lists both candidates, and ``keep_stronger`` says whether ``result.best`` (the
        stronger backbone) replaces the lite0 head.
    """
    labels = np.asarray(val_labels, np.int64)
    first_losses = per_photo_losses(first_logits, labels)
    accuracy = float((logits_to_probs(first_logits).argmax(1) == labels).mean()) if len(labels) else math.nan
    if not accuracy < ENOUGH:
        return False, None
    name = stronger_backbone()
    if name is None:
        say(f"auto: {FIRST} gets {accuracy:.1%} of validation photos right; lite1 and lite2 are not installed, so it stays {FIRST}")
        return False, None
    say(f"auto: {FIRST} gets {accuracy:.1%} of validation photos right (under {ENOUGH:.0%}): trying {name} (--model {FIRST} skips this)")
    try:
        result = search(
            train_set, val_set, math.inf, seed, backbones=[name], engine=engine, device=device, allow_composite=False,
            higher_res=False, views=views, progress=lambda line: say(f"auto: {line}"), task=task,
        )  # fmt: skip
    except ConfigError as exc:  # the stronger backbone could not be built or scored: the lite0 run stands
        (warn or say)(f"auto: {name} could not be used ({exc}); the run stays {FIRST}")
        return False, None
    first_ll = log_loss(logits_to_probs(first_logits), labels)
    first = Entry(f"{FIRST} (default head)", "ok", FIRST, score=first_ll, val_log_loss=first_ll, val_accuracy=accuracy)
    result.leaderboard.add(first)
    # Both on the validation photos (a small set's search scores by CV on train: not comparable with lite0's).
    best, best_ll = result.best, result.best.entry.val_log_loss
    if best.val_losses is not None and best.val_losses.shape == first_losses.shape:
        better = best_ll < first_ll and not within_one_se(first_losses, best.val_losses)
    else:  # not the same photos (cannot happen with one validation set): the plain comparison
        better = best_ll < first_ll
    kept = best.entry.name if better else first.name
    result.leaderboard.best = kept
    say(f"auto: validation log loss {best_ll:.4f} ({best.entry.name}) vs {first_ll:.4f} ({FIRST}): keeping {kept}")
    return better, result


__all__ = ["ENOUGH", "per_photo_losses", "stronger_backbone", "try_stronger"]
