"""MicroBatcher on its own: coalescing, bounds, errors, cancellation (no model needed)."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from imagefit.serve.batcher import MicroBatcher
from imagefit.serve.limits import ServeError


class Recorder:
    """An ``infer`` that doubles its input and records batch sizes."""

    def __init__(self, delay: float = 0.0, fail: bool = False):
        self.sizes: list[int] = []
        self.delay = delay
        self.fail = fail
        self.threads: set[str] = set()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.sizes.append(len(x))
        self.threads.add(threading.current_thread().name)
        if self.delay:
            time.sleep(self.delay)
        if self.fail:
            raise RuntimeError("engine failed")
        return x * 2


def _rows(start: int, n: int = 1) -> np.ndarray:
    return np.arange(start, start + n, dtype=np.float32)[:, None]


def test_concurrent_submits_share_calls() -> None:
    rec = Recorder()
    b = MicroBatcher(rec, window_ms=30, max_batch=16)

    async def run() -> list[np.ndarray]:
        return await asyncio.gather(*(b.submit(_rows(i)) for i in range(10)))

    outs = asyncio.run(run())
    for i, out in enumerate(outs):
        np.testing.assert_array_equal(out, _rows(i) * 2)  # each caller gets its own rows
    assert sum(rec.sizes) == 10
    assert len(rec.sizes) < 10
    assert b.stats.largest == max(rec.sizes)
    assert b.pending == 0


def test_full_batch_does_not_wait_for_the_window() -> None:
    rec = Recorder()
    b = MicroBatcher(rec, window_ms=5_000, max_batch=4)

    async def run() -> float:
        start = time.perf_counter()
        await asyncio.gather(*(b.submit(_rows(i)) for i in range(4)))
        return time.perf_counter() - start

    assert asyncio.run(run()) < 2.0
    assert rec.sizes == [4]


def test_max_batch_is_respected_and_large_requests_run_whole() -> None:
    rec = Recorder(delay=0.01)
    b = MicroBatcher(rec, window_ms=20, max_batch=8)

    async def run() -> list[np.ndarray]:
        small = [b.submit(_rows(i, 3)) for i in range(0, 30, 3)]
        big = b.submit(_rows(100, 20))
        return await asyncio.gather(*small, big)

    outs = asyncio.run(run())
    np.testing.assert_array_equal(outs[-1], _rows(100, 20) * 2)
    assert 20 in rec.sizes
    assert all(s <= 8 for s in rec.sizes if s != 20)
    assert sum(rec.sizes) == 50


def test_window_zero_is_one_call_per_request() -> None:
    rec = Recorder()
    b = MicroBatcher(rec, window_ms=0, max_batch=16)
    assert not b.batching

    async def run() -> None:
        await asyncio.gather(*(b.submit(_rows(i, 2)) for i in range(5)))

    asyncio.run(run())
    assert rec.sizes == [2] * 5


def test_all_calls_run_on_one_inference_thread() -> None:
    rec = Recorder(delay=0.005)
    b = MicroBatcher(rec, window_ms=0)

    async def run() -> None:
        await asyncio.gather(*(b.submit(_rows(i)) for i in range(6)))

    asyncio.run(run())
    assert len(rec.threads) == 1


def test_engine_error_reaches_every_waiter_and_batcher_recovers() -> None:
    rec = Recorder(fail=True)
    b = MicroBatcher(rec, window_ms=20, max_batch=16)

    async def run() -> list[object]:
        return await asyncio.gather(*(b.submit(_rows(i)) for i in range(3)), return_exceptions=True)

    assert all(isinstance(r, RuntimeError) for r in asyncio.run(run()))
    rec.fail = False

    async def again() -> np.ndarray:
        return await b.submit(_rows(7))

    np.testing.assert_array_equal(asyncio.run(again()), _rows(7) * 2)
    assert b.pending == 0


def test_cancelled_request_is_dropped() -> None:
    rec = Recorder(delay=0.2)
    b = MicroBatcher(rec, window_ms=1, max_batch=16)

    async def run() -> np.ndarray:
        first = asyncio.ensure_future(b.submit(_rows(0)))  # occupies the inference thread
        await asyncio.sleep(0.05)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(b.submit(_rows(1)), 0.01)  # gives up while queued
        out = await b.submit(_rows(2))
        await first
        return out

    np.testing.assert_array_equal(asyncio.run(run()), _rows(2) * 2)
    assert sum(rec.sizes) == 2  # the abandoned row never reached the model
    assert b.pending == 0


def test_over_max_pending_is_busy() -> None:
    rec = Recorder(delay=0.1)
    b = MicroBatcher(rec, window_ms=0, max_pending=3)

    async def run() -> list[object]:
        return await asyncio.gather(*(b.submit(_rows(i, 2)) for i in range(3)), return_exceptions=True)

    results = asyncio.run(run())
    busy = [r for r in results if isinstance(r, ServeError)]
    assert busy and all(e.status == 503 and e.error == "busy" for e in busy)
    assert any(isinstance(r, np.ndarray) for r in results)
    assert b.pending == 0


def test_works_across_event_loops() -> None:
    """Test clients may run each request in a new loop; the worker follows."""
    b = MicroBatcher(Recorder(), window_ms=5)
    for i in range(3):
        out = asyncio.run(b.submit(_rows(i)))
        np.testing.assert_array_equal(out, _rows(i) * 2)


def test_aclose_stops_the_worker() -> None:
    b = MicroBatcher(Recorder(), window_ms=5)

    async def run() -> None:
        await b.submit(_rows(0))
        await b.aclose()
        assert b._worker is None
        await b.submit(_rows(1))  # restarts on demand
        await b.aclose()

    asyncio.run(run())


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        MicroBatcher(Recorder(), window_ms=-1)
    with pytest.raises(ValueError):
        MicroBatcher(Recorder(), max_batch=0)
