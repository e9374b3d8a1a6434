"""Stream decoded, preprocessed photos and batches, decoding overlapped with inference.

libjpeg-turbo, Pillow and torch release the GIL while they decode and
resize, so threads keep a CPU inference engine fed without the start-up and
pickling cost of worker processes. Memory stays bounded: only a fixed number
of photos is in flight (:func:`bounded_map`), whatever the number of photos.
DataLoader worker processes (:class:`TrainImages`) are for augmenting training.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import multiprocessing.spawn as mp_spawn
import os
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from PIL import Image

from ..errors import BadImageError
from .load import SkipLog, content_digest, decode, decode_array, read_bytes
from .transforms import Preprocess


@dataclass
class Batch:
    """A batch of preprocessed images and where they came from."""

    indices: list[int]
    arrays: np.ndarray  # uint8 [N * views, H, W, 3]
    digests: list[str]


def default_workers() -> int:
    """Threads used for decoding: one per core, at least two."""
    return max(2, os.cpu_count() or 2)


def photo_views(data: bytes, pre: Preprocess, views: Sequence[str]) -> list[np.ndarray]:
    """Decode a file's bytes and make its eval-preprocessed uint8 views (``orig`` and/or ``flip``)."""
    base = pre.pixels(decode_array(data, draft_size=pre.resize_size))
    return [np.ascontiguousarray(base[:, ::-1]) if view == "flip" else base for view in views]


def _prepare(path: Path, pre: Preprocess, views: Sequence[str]) -> tuple[list[np.ndarray], str]:
    data = read_bytes(path)
    return photo_views(data, pre, views), content_digest(data)


T = TypeVar("T")
R = TypeVar("R")


def bounded_map(fn: Callable[[T], R], items: Iterable[T], workers: int, ahead: int, name: str) -> Iterator[tuple[T, Future[R]]]:
    """``(item, future)`` pairs in input order, computed in ``workers`` threads.

    At most ``ahead`` items are in flight, whatever the number of items, so
    memory stays bounded. The caller takes each result (or exception) from
    its future; leaving the loop early cancels what has not started.
    """
    pool = ThreadPoolExecutor(workers, thread_name_prefix=name)
    try:
        it = iter(items)
        pending: deque[tuple[T, Future[R]]] = deque((item, pool.submit(fn, item)) for item in itertools.islice(it, ahead))
        while pending:
            item, fut = pending.popleft()
            for nxt in itertools.islice(it, 1):
                pending.append((nxt, pool.submit(fn, nxt)))
            yield item, fut
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def iter_batches(
    paths: Sequence[Path],
    pre: Preprocess,
    batch_size: int,
    skipped: SkipLog,
    *,
    views: Sequence[str] = ("orig",),
    workers: int | None = None,
    keep: Callable[[int], bool] | None = None,
) -> Iterator[Batch]:
    """Yield batches of eval-preprocessed uint8 NHWC images in path order.

    Unreadable files are recorded in ``skipped`` and left out of the batches.

    Args:
        paths: Image files.
        pre: Preprocessing from the backbone spec.
        batch_size: Images per batch (each view counts once per image).
        skipped: Receives ``(path, reason)`` for every unreadable file.
        views: ``"orig"`` and/or ``"flip"``; arrays are laid out image-major.
        workers: Decoding threads (default: :func:`default_workers`).
        keep: Optional filter on indices, applied before decoding.
    """
    todo = (i for i in range(len(paths)) if keep is None or keep(i))
    idx: list[int] = []
    arrs: list[np.ndarray] = []
    digs: list[str] = []
    jobs = bounded_map(lambda i: _prepare(paths[i], pre, views), todo, workers or default_workers(), batch_size * 3, "imagefit-decode")
    for i, fut in jobs:
        try:
            arrays, digest = fut.result()
        except BadImageError as exc:
            skipped.add(paths[i], str(exc))
            continue
        idx.append(i)
        arrs.extend(arrays)
        digs.append(digest)
        if len(idx) >= batch_size:
            yield Batch(idx, np.stack(arrs), digs)
            idx, arrs, digs = [], [], []
    if idx:
        yield Batch(idx, np.stack(arrs), digs)


def worker_context() -> multiprocessing.context.BaseContext:
    """How DataLoader worker processes start: from a fork server, never by forking this process,
    and without re-running the user's script.

    Forking a process whose native thread pools are running (OpenVINO's, after
    feature extraction in the same process) crashed the parent in a test
    session; CUDA cannot be forked either. The server is a fresh process that
    imports the loader and torchvision once; workers fork from it in
    milliseconds, so a DataLoader per epoch stays cheap.

    Python's fork server and spawn start re-import ``__main__`` in every
    worker, so a script calling ``imagefit.train`` without an
    ``if __name__ == "__main__":`` guard would train again inside each worker
    and crash. A worker only needs imagefit's own dataset and torch's worker
    loop, so (as joblib's loky does) the workers here start without the
    script: no guard is needed, on Linux, macOS or Windows.
    """
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx: multiprocessing.context.BaseContext = _ForkServerWorkers()
        ctx.set_forkserver_preload(["imagefit.data.loader", "torchvision.transforms"])
        return ctx
    return _SpawnWorkers()  # Windows


_PREPARATION_LOCK = threading.Lock()


@contextlib.contextmanager
def _main_not_reimported() -> Iterator[None]:
    """While a worker is launched, leave ``__main__`` out of what the child prepares.

    The launcher reads ``multiprocessing.spawn.get_preparation_data`` at call
    time; it is swapped only for the duration of one launch, under a lock.
    """
    original = mp_spawn.get_preparation_data

    def without_main(name: str) -> dict[str, Any]:
        data: dict[str, Any] = original(name)
        data.pop("init_main_from_path", None)
        data.pop("init_main_from_name", None)
        return data

    with _PREPARATION_LOCK:
        mp_spawn.get_preparation_data = without_main
        try:
            yield
        finally:
            mp_spawn.get_preparation_data = original


class _SpawnWorker(multiprocessing.context.SpawnProcess):
    @staticmethod
    def _Popen(process_obj: Any) -> Any:
        with _main_not_reimported():
            return multiprocessing.context.SpawnProcess._Popen(process_obj)


class _SpawnWorkers(multiprocessing.context.SpawnContext):
    Process = _SpawnWorker


if sys.platform != "win32":

    class _ForkServerWorker(multiprocessing.context.ForkServerProcess):
        @staticmethod
        def _Popen(process_obj: Any) -> Any:
            with _main_not_reimported():
                return multiprocessing.context.ForkServerProcess._Popen(process_obj)

    class _ForkServerWorkers(multiprocessing.context.ForkServerContext):
        Process = _ForkServerWorker


class TrainImages(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """Labeled images with an augmenting transform, for torch's DataLoader.

    A file that fails to decode yields ``None``; :func:`collate_skip` drops it
    and the failure is listed after the epoch (worker processes cannot share a
    log, so the dataset re-checks failures in the main process).
    """

    def __init__(self, paths: Sequence[Path], labels: Sequence[int], transform: Callable[[Image.Image], torch.Tensor], draft: int | None):
        self.paths = list(paths)
        self.labels = list(labels)
        self.transform = transform
        self.draft = draft

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int] | None:
        try:
            img = decode(read_bytes(self.paths[i]), draft_size=self.draft)
        except BadImageError:
            return None
        return self.transform(img), self.labels[i], i


def collate_skip(items: list[tuple[torch.Tensor, int, int] | None]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """Collate a batch, dropping files that could not be read."""
    good = [it for it in items if it is not None]
    if not good:
        return None
    x = torch.stack([g[0] for g in good])
    y = torch.tensor([g[1] for g in good], dtype=torch.long)
    idx = torch.tensor([g[2] for g in good], dtype=torch.long)
    return x, y, idx
