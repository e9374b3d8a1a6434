"""OpenVINO is fork-safe: a process that loaded it can fork from a worker thread, and the child can use it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# The check runs in its own process: if forking broke OpenVINO, only that process dies, not the session.
_FORK_CHECK = """
import json, multiprocessing, sys, threading
import numpy as np
import imagefit
from imagefit.engine import Engine

model = imagefit.load(sys.argv[1])
s = model.preprocess.input_size
x = np.random.default_rng(0).integers(0, 256, (4, s, s, 3), dtype=np.uint8)
eng = Engine(lambda: model.backbone, model.preprocess, "fork-test", "openvino")
before = eng(x)

def child(q):
    q.put(eng(x[:2]).tolist())  # the child compiles afresh and runs

results, codes = [], []
def fork_from_thread():
    for _ in range(3):
        ctx = multiprocessing.get_context("fork")
        q = ctx.Queue()
        p = ctx.Process(target=child, args=(q,))
        p.start()
        results.append(np.array(q.get(timeout=120), np.float32))
        p.join(timeout=120)
        codes.append(p.exitcode)

threads = [threading.Thread(target=fork_from_thread) for _ in range(2)]
for t in threads:
    t.start()
for _ in range(10):
    eng(x)  # the parent keeps inferring while its threads fork
for t in threads:
    t.join()
after = eng(x)
print(json.dumps({"kind": eng.kind, "codes": codes, "parent": float(abs(after - before).max()),
                  "child": max(float(abs(r - before[:2]).max()) for r in results)}))
"""


def test_openvino_engine_survives_fork_from_worker_threads(trained_run: Path, tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    env = {**os.environ, "IMAGEFIT_CACHE": str(tmp_path / "cache"), "IMAGEFIT_THREADS": "2"}
    out = subprocess.run([sys.executable, "-c", _FORK_CHECK, str(trained_run)], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["kind"] == "openvino"
    assert got["codes"] == [0] * 6
    assert got["parent"] < 1e-5 and got["child"] < 1e-5  # same numbers before, after and in the children


# Two OpenVINO models compiled in one thread, freed in the order they were made, then a signal handled by Python.
_SIGNAL_STACK_CHECK = """
import gc, json, os, signal, sys, time
from concurrent.futures import ThreadPoolExecutor
import numpy as np
from imagefit.engine import Engine
from imagefit.engines.runners import signal_stack
from imagefit.models.registry import create_backbone

module, spec = create_backbone("lite0", pretrained=False)
s = spec.preprocess.input_size
x = np.random.default_rng(0).integers(0, 256, (2, s, s, 3), dtype=np.uint8)
before = signal_stack()
engines = [Engine(module, spec.preprocess, "signal-stack-test", "openvino") for _ in range(2)]
with ThreadPoolExecutor(2) as pool:  # as feature extraction runs them
    for eng in engines:
        list(pool.map(lambda i: eng.run_here(x[i % 2 : i % 2 + 1]), range(6)))
kind, after = engines[0].kind, signal_stack()
del eng
engines.pop(0)
gc.collect()
engines.pop(0)
gc.collect()
handled = []
signal.signal(signal.SIGUSR1, lambda *args: handled.append(args[0]))
os.kill(os.getpid(), signal.SIGUSR1)  # as a child exiting (SIGCHLD) or Ctrl-C reaches the main thread
time.sleep(0.05)
print(json.dumps({"kind": kind, "same_stack": before == after, "handled": len(handled)}))
"""


def test_freed_openvino_models_leave_the_thread_a_valid_signal_stack(tmp_path: Path) -> None:
    """OpenVINO compiles with a signal stack of its own; the thread must keep its own (else SIGSEGV on the next signal)."""
    pytest.importorskip("openvino")
    env = {**os.environ, "IMAGEFIT_CACHE": str(tmp_path / "cache"), "IMAGEFIT_THREADS": "2"}
    out = subprocess.run([sys.executable, "-c", _SIGNAL_STACK_CHECK], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"exit {out.returncode}: {out.stderr[-3000:]}"
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == {"kind": "openvino", "same_stack": True, "handled": 1}
