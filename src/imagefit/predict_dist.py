"""``predict`` scaled out over processes and machines, launched by ``torchrun``.

``torchrun --nproc-per-node N [--nnodes M --rdzv-endpoint HOST:PORT ...] -m imagefit predict RUN DATA``
sets ``RANK``/``WORLD_SIZE``; :func:`predict_distributed` then:

* expands the inputs on every rank in the same order (:func:`~imagefit.data.discover.list_images`)
  and checks that every rank sees the same list (each node reads its own copy of the photos);
* extracts the backbone features of its shard, ``files[rank::world_size]``;
* gathers the features on rank 0 through the process group (gloo; no shared filesystem needed),
  in fixed-size chunks so that no rank ever pickles or buffers its whole shard at once;
* on rank 0 only, runs :func:`~imagefit.predict.predict_files` with those features in place of
  extraction. The head, calibration, clipping, CSV or Kaggle writing and the skipped files' rows
  are therefore the single-process code itself, run on the same features in the same order: the
  CSV is byte-identical to a one-process run's (the head is applied to all photos at once there too,
  so not even a matrix product's summation order differs).

Errors: after each step every rank reports whether it failed (``all_gather_object``), so a failure
anywhere stops all ranks together instead of leaving some waiting in a collective. Rank 0 raises the
error (``rank K: ...`` when it came from another rank) with its exit code; the other ranks raise
:class:`PeerAbort`, which the CLI turns into a silent exit with the same code: one error line.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import os
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from . import errors
from .errors import ConfigError, DataError, ImagefitError
from .predict import PredictResult, check_output, default_output, predict_files

if TYPE_CHECKING:
    from .model import Model
    from .train.distributed import DistInfo
    from .ui import UI

T = TypeVar("T")
CHUNK_ROWS = 512  # photos per gather step: ~2.6 MB per rank for a 1280-feature backbone with TTA


class PeerAbort(ImagefitError):
    """Raised on ranks other than 0 when the job stops: rank 0 reports the error itself."""

    def __init__(self, rank: int, exit_code: int):
        super().__init__(f"stopped: rank {rank} failed (rank 0 reports the error)")
        self.exit_code = exit_code


def distributed_launch() -> bool:
    """Whether this process is one of several started by ``torchrun`` (``WORLD_SIZE`` > 1)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


def shard(items: Sequence[T], rank: int, world_size: int) -> list[T]:
    """Rank ``rank``'s share: every ``world_size``-th item from ``rank`` (sizes differ by at most one)."""
    return list(items[rank::world_size])


@dataclass
class RankPart:
    """What one rank found in its shard, in shard positions: the readable photos and the skipped ones."""

    indices: list[int]  # shard positions of the photos that have features, ascending
    skipped: list[tuple[int, str, str]]  # (shard position, path, reason)
    n_features: int  # 0 when the shard had no readable photo


@dataclass
class Layout:
    """Where every rank's rows go in the single-process order."""

    indices: np.ndarray  # global positions of the photos with features, ascending (as extract returns them)
    slots: list[np.ndarray]  # per rank: the row of ``indices`` each of its feature rows fills
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason) in input order
    n_features: int = 0


def merge_layout(parts: list[RankPart]) -> Layout:
    """Map each rank's shard positions back to the input order (rank ``r``'s position ``j`` is ``r + j*world``).

    Skipped files come back in input order, which is the order one process records them in.
    """
    world = len(parts)
    glob = [np.asarray(p.indices, np.int64) * world + r for r, p in enumerate(parts)]
    indices = np.sort(np.concatenate(glob)) if glob else np.zeros(0, np.int64)
    slots = [np.searchsorted(indices, g) for g in glob]
    skips = sorted((j * world + r, path, reason) for r, p in enumerate(parts) for j, path, reason in p.skipped)
    return Layout(indices, slots, [(path, reason) for _, path, reason in skips], max((p.n_features for p in parts), default=0))


def skip_positions(files: Sequence[Path], items: Sequence[tuple[str, str]]) -> list[tuple[int, str, str]]:
    """The shard position of each skipped ``(path, reason)`` (a file listed twice takes its positions in turn)."""
    where: dict[str, deque[int]] = defaultdict(deque)
    for j, f in enumerate(files):
        where[str(f)].append(j)
    out = []
    for path, reason in items:
        slot = where.get(path)
        if not slot:
            raise DataError(f"{path}: skipped but not one of this rank's photos")
        out.append((slot.popleft(), path, reason))
    return out


class _Answered:
    """Stands in for ``Model.features`` on rank 0: the features every rank extracted, in input order."""

    def __init__(self, files: list[Path], layout: Layout, values: np.ndarray):
        self.files, self.layout, self.values = files, layout, values

    def __call__(self, paths: Sequence[Path], skipped: Any, *, tta: bool = False, ui: UI | None = None) -> tuple[np.ndarray, np.ndarray]:
        if [Path(p) for p in paths] != self.files:
            raise DataError(f"the photos changed while predicting: {len(self.files)} were shared out, {len(paths)} are there now")
        for path, reason in self.layout.skipped:
            skipped.add(path, reason)
        return self.layout.indices, self.values


def _error_report(exc: BaseException | None) -> tuple[str, int, str] | None:
    if exc is None:
        return None
    if isinstance(exc, ImagefitError):
        return type(exc).__name__, exc.exit_code, str(exc)
    return "ImagefitError", 1, f"{type(exc).__name__}: {exc}"


def _agree(info: DistInfo, exc: BaseException | None) -> None:
    """Every rank learns whether any failed; all raise together, so none waits in a later collective."""
    import torch.distributed as dist

    reports: list[Any] = [None] * info.world_size
    dist.all_gather_object(reports, _error_report(exc))
    failed = [(r, rep) for r, rep in enumerate(reports) if rep is not None]
    if not failed:
        return
    rank, (name, code, message) = failed[0]
    if exc is not None and (info.is_main or not isinstance(exc, ImagefitError)):
        raise exc  # this rank's own error (a bug keeps its traceback on the rank it happened on)
    if not info.is_main:
        raise PeerAbort(rank, code)
    cls = getattr(errors, name, None)
    cls = cls if isinstance(cls, type) and issubclass(cls, ImagefitError) else ImagefitError
    error = cls(f"rank {rank}: {message}")
    error.exit_code = code
    raise error


def _together(info: DistInfo, fn: Callable[[], T]) -> T:
    """Run ``fn`` on this rank, then stop every rank if it failed on any."""
    try:
        result = fn()
    except Exception as exc:
        _agree(info, exc)
        raise  # unreachable: _agree raises when given an error
    _agree(info, None)
    return result


def _load(model_or_run: Model | str | Path) -> Model:
    if isinstance(model_or_run, (str, Path)):
        from .model import Model

        return Model.load(model_or_run)
    return model_or_run


def _share_cores() -> None:
    """One engine thread per core of this node, shared between its ranks (unless ``IMAGEFIT_THREADS`` says)."""
    if "IMAGEFIT_THREADS" not in os.environ:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        local = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
        os.environ["IMAGEFIT_THREADS"] = str(max(1, cores // max(local, 1)))


def _prepare(
    model_or_run: Model | str | Path, inputs: list[str | Path], out: str | Path | None, options: dict[str, Any], main: bool
) -> tuple[Model, list[Path]]:
    """Load the model and list the photos; rank 0 also checks the options and output before any photo is read."""
    from .data.discover import list_images
    from .paths import check_writable

    if main:
        try:
            inspect.signature(predict_files).bind(None, inputs, out, **options)
        except TypeError as exc:
            raise ConfigError(f"predict_distributed: {exc}") from None
        dest = check_output(out or default_output(bool(options.get("kaggle", False))), inputs)
        check_writable(dest.parent, need_bytes=16 * 2**20)
    return _load(model_or_run), list(list_images(inputs))


def _same_files(info: DistInfo, files: list[Path]) -> None:
    """Refuse to shard when the ranks see different photo lists (each node reads its own copy)."""
    import torch.distributed as dist

    digest = hashlib.sha256("\n".join(str(f) for f in files).encode()).hexdigest()
    seen: list[Any] = [None] * info.world_size
    dist.all_gather_object(seen, (len(files), digest))
    bad = next((r for r, s in enumerate(seen) if s != seen[0]), None)
    problem = None
    if bad is not None:
        problem = DataError(
            f"rank {bad} sees {seen[bad][0]} photos and rank 0 sees {seen[0][0]} (or other paths): "
            "every process must see the same files at the same paths"
        )
    _agree(info, problem if info.is_main else None)


def chunk(values: np.ndarray, start: int, rows: int, n_views: int, n_features: int) -> np.ndarray:
    """Rows ``start:start+rows`` of ``values`` padded with zeros to ``rows`` (every rank sends the same shape).

    A rank without readable photos holds ``[0, views, 0]`` features and sends zeros of the common width.
    """
    piece = np.zeros((rows, n_views, n_features), np.float32)
    mine = values[start : start + rows]
    if len(mine):
        piece[: len(mine)] = mine
    return piece


def _gather_values(values: np.ndarray, layout: Layout, n_views: int, info: DistInfo) -> np.ndarray | None:
    """Rank 0 receives every rank's feature rows straight into their single-process positions."""
    import torch
    import torch.distributed as dist

    f = layout.n_features
    if f == 0:
        return np.zeros((0, n_views, 0), np.float32) if info.is_main else None
    out = np.empty((len(layout.indices), n_views, f), np.float32) if info.is_main else None
    longest = max(len(s) for s in layout.slots)
    for start in range(0, longest, CHUNK_ROWS):
        piece = chunk(values, start, CHUNK_ROWS, n_views, f)
        received = [torch.empty_like(torch.from_numpy(piece)) for _ in range(info.world_size)] if info.is_main else None
        dist.gather(torch.from_numpy(piece), received, dst=0)
        if out is not None and received is not None:
            for r, buf in enumerate(received):
                rows = layout.slots[r][start : start + CHUNK_ROWS]
                out[rows] = buf.numpy()[: len(rows)]
    return out


def predict_distributed(
    model_or_run: Model | str | Path,
    paths: list[str | Path],
    out: str | Path | None = None,
    **options: Any,
) -> PredictResult | None:
    """:func:`~imagefit.predict.predict_files` over all the processes ``torchrun`` started.

    Takes the same keyword options as :func:`~imagefit.predict.predict_files` (``tta``, ``clip``,
    ``kaggle``, ``report``, ``progress``, ``unknown``...), passed on as they are, and a run folder or
    a loaded model. Without ``torchrun`` (``WORLD_SIZE`` unset or 1) it is exactly that function.

    Returns:
        The :class:`~imagefit.predict.PredictResult` on rank 0 (the only rank that writes), None on the others.

    Raises:
        ImagefitError: on rank 0, any rank's error (``rank K: ...`` from another rank), with its exit code.
        PeerAbort: on the other ranks, when any rank failed.
    """
    if not distributed_launch():
        return predict_files(_load(model_or_run), list(paths), out, **options)
    import torch
    import torch.distributed as dist

    from .train.distributed import setup, teardown

    owned = not dist.is_initialized()
    # gloo whatever computes the features: they travel as CPU tensors.
    info = setup(torch.device("cpu"))
    try:
        if torch.cuda.is_available():
            torch.cuda.set_device(info.local_rank % torch.cuda.device_count())
        _share_cores()
        return _predict_shards(info, model_or_run, list(paths), out, options)
    finally:
        if owned:
            teardown(info)


def _predict_shards(
    info: DistInfo, model_or_run: Model | str | Path, inputs: list[str | Path], out: str | Path | None, options: dict[str, Any]
) -> PredictResult | None:
    import torch.distributed as dist

    from .data.load import SkipLog
    from .ui import UI

    model, files = _together(info, lambda: _prepare(model_or_run, inputs, out, options, info.is_main))
    _same_files(info, files)
    mine = shard(files, info.rank, info.world_size)
    skipped = SkipLog()
    tta = model.tta if options.get("tta") is None else bool(options["tta"])
    ui = UI(bool(options.get("progress", False)) and info.is_main)
    idx, values = _together(info, lambda: model.features(mine, skipped, tta=tta, ui=ui))
    part = _together(info, lambda: RankPart([int(i) for i in idx], skip_positions(mine, skipped.items), int(values.shape[2])))
    parts: list[Any] = [None] * info.world_size
    dist.all_gather_object(parts, part)
    layout = merge_layout(parts)
    gathered = _gather_values(values, layout, 2 if tta else 1, info)
    if gathered is None:
        _agree(info, None)  # wait for rank 0's verdict on writing
        return None
    answered = copy.copy(model)
    # Model.predict asks self.features for the photos' features: the gathered ones answer.
    setattr(answered, "features", _Answered(files, layout, gathered))  # noqa: B010 - shadows the method on this copy only
    return _together(info, lambda: predict_files(answered, inputs, out, **options))
