"""Micro-batching: one model call for the images of many concurrent requests.

A model call on a batch costs less per image than one call per image (fewer
calls, better use of the cores): on 2 cores the engine runs lite0 faster per
image in batches of 2-4 than one at a time, while batches of 16 spill the
cache and lose the gain, so the default ``max_batch`` is 4 (see the Serving
and Inference engines sections of BENCHMARKS.md); more cores gain from
larger batches.
So when requests arrive together it pays to hold the first one a few
milliseconds and run everything that arrived meanwhile in one call. Under
light load the wait is at most ``window_ms``; under heavy load batches fill
up while the previous one runs, so the wait costs nothing.

All model calls go through one inference thread: the engine already uses
every core for one call, and two concurrent calls would only fight over them.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from .limits import ServeError

Infer = Callable[[np.ndarray], np.ndarray]


@dataclass
class _Item:
    x: np.ndarray
    future: asyncio.Future[np.ndarray]


@dataclass
class BatchStats:
    """Counters for ``GET /health`` and the tests."""

    calls: int = 0  # model calls
    images: int = 0  # images through the model
    largest: int = 0  # largest batch seen
    busy_s: float = 0.0  # wall time spent in model calls
    sizes: list[int] = field(default_factory=list)  # last batch sizes (bounded)

    def record(self, n: int, seconds: float = 0.0) -> None:
        """Count one model call of ``n`` images that took ``seconds``."""
        self.calls += 1
        self.images += n
        self.busy_s += seconds
        self.largest = max(self.largest, n)
        self.sizes.append(n)
        del self.sizes[:-256]


class MicroBatcher:
    """Coalesce concurrent :meth:`submit` calls into batched ``infer`` calls.

    Args:
        infer: Maps a batch ``[N, ...]`` to results ``[N, ...]``; runs
            in the inference thread.
        window_ms: How long the first queued request waits for company.
            ``0`` disables batching: every request is its own model call
            (still one at a time), for comparison.
        max_batch: Most images in one model call (a single larger request
            still runs whole).
        max_pending: Most images queued or running; beyond it ``submit``
            raises a 503 ``busy`` :class:`ServeError`.
    """

    def __init__(self, infer: Infer, *, window_ms: float = 5.0, max_batch: int = 4, max_pending: int = 512):
        if window_ms < 0 or max_batch < 1:
            raise ValueError(f"window_ms must be >= 0 and max_batch >= 1, received {window_ms}, {max_batch}")
        self.infer = infer
        self.window_s = window_ms / 1000.0
        self.max_batch = max_batch
        self.max_pending = max_pending
        self.stats = BatchStats()
        self.pending = 0  # images accepted and not yet answered
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="imagefit-infer")
        self._lock = threading.Lock()
        # Queue, events and worker belong to one event loop; they are rebuilt if
        # the batcher is used from another (test clients may start a loop per run).
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: deque[_Item] = deque()
        self._arrived: asyncio.Event | None = None
        self._full: asyncio.Event | None = None
        self._queued = 0  # images waiting in the queue
        self._worker: asyncio.Task[None] | None = None

    @property
    def batching(self) -> bool:
        """Whether requests are coalesced (``window_ms > 0``)."""
        return self.window_s > 0

    async def submit(self, x: np.ndarray) -> np.ndarray:
        """Run ``infer`` on ``x`` (one request's images), batched with others.

        Raises:
            ServeError: 503 ``busy`` when too many images are already waiting.
        """
        n = len(x)
        if self.pending + n > self.max_pending:
            raise ServeError(
                503,
                "busy",
                f"{self.pending} images are waiting for the model (limit {self.max_pending}); retry shortly",
                {"Retry-After": "1"},
            )
        self.pending += n
        try:
            if not self.batching:
                loop = asyncio.get_running_loop()
                out = await loop.run_in_executor(self._executor, self._call, x)
                return out
            self._ensure_worker()
            assert self._arrived is not None and self._full is not None
            fut: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
            self._queue.append(_Item(x, fut))
            self._queued += n
            self._arrived.set()
            if self._queued >= self.max_batch:
                self._full.set()
            return await fut
        finally:
            self.pending -= n

    def _call(self, x: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        out = self.infer(x)
        with self._lock:
            self.stats.record(len(x), time.perf_counter() - start)
        return out

    def _ensure_worker(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is loop and self._worker is not None and not self._worker.done():
            return
        self._loop = loop
        self._queue = deque()
        self._arrived = asyncio.Event()
        self._full = asyncio.Event()
        self._queued = 0
        self._worker = loop.create_task(self._run(), name="imagefit-batcher")

    async def _next_batch(self) -> list[_Item]:
        assert self._arrived is not None and self._full is not None
        while not self._queue:
            self._arrived.clear()
            await self._arrived.wait()
        if self._queued < self.max_batch:
            # Waiting on an event (not on a queue get with a timeout) cannot lose
            # an item to a timeout that races with its arrival.
            self._full.clear()
            try:
                await asyncio.wait_for(self._full.wait(), self.window_s)
            except asyncio.TimeoutError:
                pass
        first = self._queue.popleft()
        batch, n = [first], len(first.x)
        # The first request always runs, even if larger than max_batch; later
        # ones join only while they fit.
        while self._queue and n + len(self._queue[0].x) <= self.max_batch:
            nxt = self._queue.popleft()
            batch.append(nxt)
            n += len(nxt.x)
        self._queued -= n
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = await self._next_batch()
            # Requests that timed out or disconnected while queued are dropped.
            live = [it for it in items if not it.future.done()]
            if not live:
                continue
            x = live[0].x if len(live) == 1 else np.concatenate([it.x for it in live])
            try:
                out = await loop.run_in_executor(self._executor, self._call, x)
            except Exception as exc:
                for it in live:
                    if not it.future.done():
                        it.future.set_exception(exc)
                continue
            start = 0
            for it in live:
                stop = start + len(it.x)
                if not it.future.done():
                    it.future.set_result(out[start:stop])
                start = stop

    async def aclose(self) -> None:
        """Stop the worker (pending requests are cancelled)."""
        if self._worker is not None and not self._worker.done():
            self._worker.cancel()
            try:
                await self._worker
            except (asyncio.CancelledError, RuntimeError):
                pass
        self._worker = None
        while self._queue:
            item = self._queue.popleft()
            if not item.future.done():
                item.future.cancel()
        self._queued = 0


__all__ = ["BatchStats", "MicroBatcher"]
