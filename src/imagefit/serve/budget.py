"""Decode budget: how many pixels the server agrees to decode, per request and in total.

A 7990x7990 PNG is under the per-image limit yet compresses to ~200 kB and decodes
to 190 MB; 32 of them fit in an ordinary upload. Decoding such floods in the shared
pool starved normal requests (504) and grew memory by GBs. So every image's decode
cost is read from its header before any pixel is decoded, and a request is admitted
only while its cost fits:

* over ``max_request_pixels`` on its own: 413 ``request_too_many_pixels`` (it would
  never fit);
* over what is left of ``max_inflight_pixels`` (pixels admitted and not yet decoded,
  across requests): 503 ``busy`` with ``Retry-After``.

Big images (over ``big_image_pixels``) and normal ones are accounted and decoded
separately (:class:`DecodePools`), so big ones wait for each other, never for a photo,
and a photo never queues behind them. Each cost is given back when that image's
decode ends (or is cancelled), not when the request's coroutine ends: a timed-out
request's decodes still hold their budget while they run.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from .limits import ServeError
from .settings import ServeSettings

BIG, NORMAL = "big", "normal"


@dataclass(frozen=True)
class Cost:
    """One image's decode cost: pixels it decodes to, and the lane it decodes in."""

    pixels: int
    lane: str


class DecodeBudget:
    """Thread-safe accounting of pixels admitted and not yet decoded, per lane.

    Args:
        per_request: Most pixels one request may decode (413 beyond).
        total: Most pixels in flight per lane, across requests (503 beyond).
    """

    def __init__(self, per_request: int, total: int):
        self.per_request = per_request
        self.total = total
        self._lock = threading.Lock()
        self._used = {BIG: 0, NORMAL: 0}

    def in_flight(self, lane: str | None = None) -> int:
        """Pixels admitted and not yet decoded (in ``lane``, or in both)."""
        with self._lock:
            return self._used[lane] if lane else sum(self._used.values())

    def admit(self, costs: list[Cost]) -> None:
        """Reserve ``costs`` for one request, or refuse it before anything is decoded.

        Raises:
            ServeError: 413 ``request_too_many_pixels`` or 503 ``busy``.
        """
        need = {BIG: 0, NORMAL: 0}
        for c in costs:
            need[c.lane] += c.pixels
        asked = sum(need.values())
        if asked > self.per_request:
            raise ServeError(
                413,
                "request_too_many_pixels",
                f"the images of this request decode to {asked:,} pixels; the limit per request is {self.per_request:,}: send fewer or smaller images",
            )
        with self._lock:
            for lane, n in need.items():
                if n and self._used[lane] + n > self.total:
                    raise ServeError(
                        503,
                        "busy",
                        f"the server is decoding {self._used[lane]:,} pixels of {lane} images (limit {self.total:,}); retry shortly",
                        {"Retry-After": "2" if lane == BIG else "1"},
                    )
            for lane, n in need.items():
                self._used[lane] += n

    def release(self, cost: Cost) -> None:
        """Give back one image's reservation (its decode ended or was cancelled)."""
        with self._lock:
            self._used[cost.lane] = max(0, self._used[cost.lane] - cost.pixels)


class DecodePools:
    """Two bounded thread pools (normal and big images) that return memory after big decodes.

    Args:
        settings: ``decode_workers`` (0: one per core, at most 8) and ``big_decode_workers``.
        default_workers: Threads when ``decode_workers`` is 0.
    """

    def __init__(self, settings: ServeSettings, default_workers: int):
        self._workers = {NORMAL: settings.decode_workers or default_workers, BIG: settings.big_decode_workers}
        self._pools: dict[str, ThreadPoolExecutor] = {}
        self.start()
        self.budget = DecodeBudget(settings.max_request_pixels, settings.max_inflight_pixels)
        self.trims = 0  # malloc_trim calls (for the tests)

    def start(self) -> None:
        """(Re)create the threads: an app may be started again after a shutdown (each test client does)."""
        for lane in self._workers:
            self._pool(lane)

    def _pool(self, lane: str) -> ThreadPoolExecutor:
        pool = self._pools.get(lane)
        if pool is None:
            pool = self._pools[lane] = ThreadPoolExecutor(self._workers[lane], thread_name_prefix=f"imagefit-serve-decode-{lane}")
        return pool

    def submit(self, cost: Cost, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """Run ``fn(*args)`` in ``cost``'s lane; the budget is released when it ends or is cancelled."""
        task = functools.partial(fn, *args)
        if cost.lane == BIG:
            task = functools.partial(self._run_big, task)
        fut = self._pool(cost.lane).submit(task)
        fut.add_done_callback(lambda _: self.budget.release(cost))
        return fut

    def _run_big(self, task: Callable[[], Any]) -> Any:
        try:
            return task()
        finally:
            # The decoded image (hundreds of MB) is freed by now; glibc keeps freed
            # heap memory in its arenas unless asked to hand it back.
            if trim_memory():
                self.trims += 1

    def shutdown(self) -> None:
        """Stop the threads; queued decodes are cancelled (their budget released)."""
        pools, self._pools = self._pools, {}
        for pool in pools.values():
            pool.shutdown(wait=False, cancel_futures=True)


def _libc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        fn = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return fn


_TRIM = _libc_trim()


def trim_memory() -> bool:
    """Return freed heap memory to the system (glibc ``malloc_trim``); False where unavailable."""
    if _TRIM is None:
        return False
    _TRIM(0)
    return True


__all__ = ["BIG", "NORMAL", "Cost", "DecodeBudget", "DecodePools", "trim_memory"]
