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
