"""CPU runners of an exported ONNX graph: ONNX Runtime and OpenVINO, fork-safe.

Both run one photo (``one``) in the calling thread, so that one thread per
core can take a photo from file to features, or a list of chunks over their
own threads (``__call__``).

Signals: OpenVINO compiles with a signal stack of its own in the calling
thread; the thread's own is put back (:func:`_signal_stack_kept`), or freeing
models left it on an unmapped stack and the next signal was a SIGSEGV.

Fork safety: a process that forks while OpenVINO runs a request hands the
child a copy of half-updated native state (its thread pools, locks held by
threads that do not exist there); such a child hung. So every
OpenVINO runner registers with :func:`os.register_at_fork`: before a fork it
waits until no request runs and holds new ones back, and in the child it drops
the inherited compiled model and compiles a fresh one on first use. A child
started by ``multiprocessing`` with ``fork`` (DataLoader workers, a server's
workers) can then use the engine too.
"""

from __future__ import annotations

import ctypes
import functools
import os
import queue
import sys
import threading
import weakref
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import numpy as np


class Runner(Protocol):
    """Runs chunks of uint8 NHWC pixels through the graph."""

    def one(self, chunk: np.ndarray) -> np.ndarray: ...

    def __call__(self, chunks: list[np.ndarray]) -> list[np.ndarray]: ...


class OrtRunner:
    """One ONNX Runtime session, run single-threaded from ``threads`` Python threads.

    ``InferenceSession.run`` is thread-safe and releases the GIL. With one
    thread per session there is no native thread pool to break on fork.
    """

    precision = "fp32"

    def __init__(self, path: Path, threads: int):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.threads = threads
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="imagefit-ort") if threads > 1 else None

    def one(self, chunk: np.ndarray) -> np.ndarray:
        """Run one chunk in the calling thread."""
        return self.session.run(None, {"input": chunk})[0]

    def __call__(self, chunks: list[np.ndarray]) -> list[np.ndarray]:
        if self.pool is None or len(chunks) == 1:
            return [self.one(c) for c in chunks]
        return list(self.pool.map(self.one, chunks))


class OpenVinoRunner:
    """OpenVINO with one stream per thread, each stream's request run by a blocking ``infer``.

    A blocking ``infer`` releases the GIL and needs no Python callbacks on
    OpenVINO's threads (its async queue, driven from Python, crashed the
    interpreter in a test session). Requests are taken from a pool, so
    ``threads`` photos run at once, each on its own core.
    """

    def __init__(self, path: Path, threads: int, precision: str):
        self.path, self.threads, self.precision = path, threads, precision
        self._pool: ThreadPoolExecutor | None = None
        self._requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._pid = -1
        self._gate = threading.Condition()
        self._running = 0
        self._forking = False
        self._compile()
        _LIVE.add(self)

    def _compile(self) -> None:
        import openvino as ov

        core = ov.Core()
        hint = {"fp32": "f32", "bf16": "bf16"}[self.precision]
        with _signal_stack_kept():
            compiled = core.compile_model(
                core.read_model(str(self.path)),
                "CPU",
                {"INFERENCE_PRECISION_HINT": hint, "NUM_STREAMS": str(self.threads), "INFERENCE_NUM_THREADS": str(self.threads)},
            )
        self._compiled = compiled
        self._requests = queue.SimpleQueue()
        for _ in range(self.threads):
            self._requests.put(compiled.create_infer_request())
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="imagefit-ov") if self.threads > 1 else None
        self._pid = os.getpid()
        self._warm_up()

    def _warm_up(self) -> None:
        """One inference from this thread alone, before any concurrent use.

        OpenVINO's Python binding initialises function-local statics on the first
        ``infer``, and that initialiser waits for the GIL: two threads making their
        first call at once deadlocked (one held the GIL waiting for the static's guard,
        the other held the guard waiting for the GIL; seen under torchrun in the suite).
        """
        port = self._compiled.input(0)
        shape = [d.get_length() if d.is_static else 1 for d in port.get_partial_shape()]
        dummy = np.zeros(shape, dtype=port.get_element_type().to_dtype())
        request = self._requests.get()
        try:
            request.infer({0: dummy}, share_inputs=True)
        finally:
            self._requests.put(request)

    @contextmanager
    def _request(self) -> Iterator[Any]:
        with self._gate:
            self._gate.wait_for(lambda: not self._forking)
            if self._pid != os.getpid():
                self._compile()  # a forked child: the inherited compiled model is not usable here
            self._running += 1
        request = self._requests.get()
        try:
            yield request
        finally:
            self._requests.put(request)
            with self._gate:
                self._running -= 1
                self._gate.notify_all()

    def one(self, chunk: np.ndarray) -> np.ndarray:
        """Run one C-contiguous chunk in the calling thread."""
        with self._request() as request:
            # Zero-copy input: the chunk outlives the call; the output buffer is the request's, so copy.
            return request.infer({0: chunk}, share_inputs=True)[0].copy()

    def __call__(self, chunks: list[np.ndarray]) -> list[np.ndarray]:
        if self._pool is None or len(chunks) == 1 or self._pid != os.getpid():
            return [self.one(c) for c in chunks]
        return list(self._pool.map(self.one, chunks))

    # -- fork handlers (see the module notes) ------------------------------------------------
    def _before_fork(self) -> None:
        with self._gate:
            self._forking = True
            self._gate.wait_for(lambda: self._running == 0)

    def _after_fork_parent(self) -> None:
        with self._gate:
            self._forking = False
            self._gate.notify_all()

    def _after_fork_child(self) -> None:
        # Only this thread exists in the child: fresh locks and no pool; compile again on first use.
        # The inherited objects are kept, never destroyed: their destructors would wait for
        # native threads that do not exist in the child.
        _ABANDONED.append((self._compiled, self._requests, self._pool))
        self._gate = threading.Condition()
        self._forking = False
        self._running = 0
        self._pool = None
        self._requests = queue.SimpleQueue()
        self._compiled = None
        self._pid = -1


class _StackT(ctypes.Structure):
    """``stack_t`` of ``sigaltstack(2)`` (Linux)."""

    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


@functools.cache
def _libc() -> Any:
    return ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def signal_stack() -> tuple[int, int, int] | None:
    """The calling thread's alternate signal stack as ``(address, flags, size)``; None where not known (not Linux)."""
    libc = _libc()
    if libc is None:
        return None
    current = _StackT()
    if libc.sigaltstack(None, ctypes.byref(current)) != 0:
        return None
    return current.ss_sp or 0, current.ss_flags, current.ss_size


@contextmanager
def _signal_stack_kept() -> Iterator[None]:
    """Put the calling thread's alternate signal stack back after OpenVINO compiles a model.

    OpenVINO's CPU plugin gives the thread that compiles a model a signal stack
    of its own, and when that compiled model is freed it unmaps that stack and,
    if it is still the thread's, reinstates the one it found. Two models
    compiled in one thread and freed in the order they were made (the first
    found none, the second found the first's) left the thread on the first
    one's unmapped stack; the next signal handled there (every Python signal
    handler runs on the alternate stack: Ctrl-C, torch's SIGCHLD handler after
    a DataLoader, a child exiting) killed the process with SIGSEGV: the test
    session in tests/reliability/test_interrupt.py, after tests that had
    trained models in the pytest process. With the thread's own stack back,
    OpenVINO's is never the current one, so freeing a model never touches it.
    """
    libc = _libc()
    before = _StackT()
    if libc is None or libc.sigaltstack(None, ctypes.byref(before)) != 0:
        yield
        return
    try:
        yield
    finally:
        libc.sigaltstack(ctypes.byref(before), None)  # as read: SS_DISABLE where the thread had none


_LIVE: weakref.WeakSet[OpenVinoRunner] = weakref.WeakSet()
_ABANDONED: list[object] = []


def _before() -> None:
    for runner in list(_LIVE):
        runner._before_fork()


def _after_parent() -> None:
    for runner in list(_LIVE):
        runner._after_fork_parent()


def _after_child() -> None:
    for runner in list(_LIVE):
        runner._after_fork_child()


if hasattr(os, "register_at_fork"):  # not on Windows, which cannot fork
    os.register_at_fork(before=_before, after_in_parent=_after_parent, after_in_child=_after_child)


__all__ = ["OpenVinoRunner", "OrtRunner", "Runner"]
