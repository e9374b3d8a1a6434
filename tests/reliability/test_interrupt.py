"""Issue 5, part 2: a killed or Ctrl-C'd training resumes to the same model.

``imagefit train --strategy full`` runs as a subprocess on enough images that
an epoch lasts seconds. It is killed (SIGKILL) or interrupted (SIGINT, as a
terminal's Ctrl-C sends to the whole process group) while the second epoch is
running, then continued with ``--resume``. The final ``model.safetensors`` and
metrics must equal those of an uninterrupted run with the same seed, bit for
bit: the trainer re-seeds everything random from ``(seed, epoch)`` and the
checkpoint holds weights, optimizer and callback state exactly. Both runs use
one torch thread (``OMP_NUM_THREADS=1``) so that CPU kernels sum in the same
order.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from .conftest import COLORS, noisy

EPOCHS = 4
N_PER_CLASS = 40  # 64 train images of 160x160: an epoch takes ~3 s with one thread


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1", COLUMNS="200")
    return env


# `python -m imagefit`, with Python's Ctrl-C handler installed even when this suite was started with SIGINT
# ignored (a background job of a shell without job control): an ignored SIGINT is inherited, and kept.
_MAIN = "import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); runpy.run_module('imagefit', run_name='__main__')"


def _cmd(data: Path | None, out: Path, *, resume: bool = False) -> list[str]:
    cmd = [sys.executable, "-c", _MAIN, "train"]
    if resume:
        # DATA may be left out: a resumed run reads it from its folder.
        return [*cmd, "--resume", "--out", str(out)]
    return [
        *cmd,
        str(data),
        "--model",
        "simple_cnn",
        "--strategy",
        "full",
        "--epochs",
        str(EPOCHS),
        "--out",
        str(out),
        "--seed",
        "0",
        "--batch-size",
        "8",
    ]


def _start(cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
    fh = log.open("wb")
    # A session of its own, so that the whole group (DataLoader workers too) can be signalled.
    return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=_env(), start_new_session=True)


def _epochs_done(out: Path) -> int:
    try:
        return int(json.loads((out / "checkpoint" / "backbone.json").read_text())["epochs_done"])
    except (OSError, ValueError, KeyError):
        return 0


def _interrupt_mid_epoch(proc: subprocess.Popen[bytes], out: Path, sig: signal.Signals, log: Path) -> int:
    """Wait for epoch 1's checkpoint, signal during epoch 2; returns epochs done in the checkpoint."""
    deadline = time.monotonic() + 240
    while _epochs_done(out) < 1:
        if proc.poll() is not None:
            pytest.fail(f"training ended before its first checkpoint:\n{log.read_text(errors='replace')[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("no checkpoint after 240 s")
        time.sleep(0.02)
    # Epoch 1 took about (checkpoint time - data prepared time); wait a third of that into epoch 2.
    ckpt = out / "checkpoint"
    epoch_s = (ckpt / "backbone.json").stat().st_mtime - (ckpt / "run_state.json").stat().st_mtime
    time.sleep(min(max(epoch_s / 3, 0.2), 2.0))
    assert proc.poll() is None, "training finished before it could be interrupted"
    assert _epochs_done(out) == 1, "epoch 2 ended before the signal: epochs too fast for this test"
    if sig == signal.SIGKILL:
        os.kill(proc.pid, signal.SIGKILL)  # the trainer itself, as the OOM killer or a power cut would
    else:
        os.killpg(proc.pid, sig)  # Ctrl-C in a terminal signals the whole foreground group
    proc.wait(timeout=120)
    if sig == signal.SIGKILL:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # orphaned DataLoader workers of this test's run
        except ProcessLookupError:
            pass
    return _epochs_done(out)


def _result(out: Path) -> tuple[dict[str, torch.Tensor], dict, list[dict[str, str]]]:
    meta = json.loads((out / "imagefit.json").read_text())
    with (out / "history.csv").open() as fh:
        history = list(csv.DictReader(fh))
    return load_file(str(out / "model.safetensors")), meta, history


def _assert_same_run(out: Path, ref: Path) -> None:
    w, meta, hist = _result(out)
    w_ref, meta_ref, hist_ref = _result(ref)
    assert w.keys() == w_ref.keys()
    for k in w:
        assert torch.equal(w[k], w_ref[k]), f"tensor {k} differs from the uninterrupted run"
    assert meta["metrics"] == meta_ref["metrics"]
    assert meta["temperature"] == meta_ref["temperature"]
    assert meta["backbone"]["digest"] == meta_ref["backbone"]["digest"]
    assert hist == hist_ref
    assert len(hist) == EPOCHS


@pytest.fixture(scope="module")
def interrupt_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("interrupt") / "data"
    for cls, color in COLORS.items():
        for i in range(N_PER_CLASS):
            p = root / cls / f"{cls}_{i}.jpg"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(noisy(color, (160, 160), seed=i)).save(p, quality=90)
    return root


def _scenario(data: Path, folder: Path, sig: signal.Signals) -> dict:
    """Train, interrupt with ``sig`` during epoch 2, resume; returns what happened."""
    out, log = folder / "run", folder / "interrupted.log"
    proc = _start(_cmd(data, out), log)
    done = _interrupt_mid_epoch(proc, out, sig, log)
    info = {
        "out": out,
        "returncode": proc.returncode,
        "log": log.read_text(errors="replace"),
        "epochs_done": done,
        "had_model": (out / "model.safetensors").exists(),
        "checkpoint_loads": bool(load_file(str(out / "checkpoint" / "backbone.safetensors"))),
        "tmp_files": [p.name for p in (out / "checkpoint").glob("*.tmp")],
    }
    info["resumed"] = subprocess.run(_cmd(None, out, resume=True), env=_env(), capture_output=True, text=True, timeout=600)
    return info


@pytest.fixture(scope="module")
def runs(interrupt_data: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The reference run and both interrupted scenarios, run side by side (one thread each)."""
    ref_out = tmp_path_factory.mktemp("reference") / "run"
    ref_log = ref_out.parent / "reference.log"
    ref = _start(_cmd(interrupt_data, ref_out), ref_log)
    pool = ThreadPoolExecutor(2)
    futures = {
        sig: pool.submit(_scenario, interrupt_data, tmp_path_factory.mktemp(sig.name.lower()), sig)
        for sig in (signal.SIGKILL, signal.SIGINT)
    }

    def reference() -> Path:
        code = ref.wait(timeout=600)
        assert code == 0, ref_log.read_text(errors="replace")[-3000:]
        return ref_out

    yield futures, reference
    pool.shutdown(wait=True)
    if ref.poll() is None:
        ref.kill()
        ref.wait()


def test_sigkill_then_resume_gives_the_same_model(runs) -> None:  # type: ignore[no-untyped-def]
    futures, reference = runs
    r = futures[signal.SIGKILL].result(timeout=900)
    assert r["returncode"] == -signal.SIGKILL
    assert r["epochs_done"] == 1
    assert not r["had_model"]
    # Nothing half-written: the checkpoint loads.
    assert r["checkpoint_loads"]
    assert r["resumed"].returncode == 0, r["resumed"].stderr[-3000:]
    assert "resuming" in r["resumed"].stderr
    _assert_same_run(r["out"], reference())


def test_ctrl_c_exits_130_with_a_resumable_checkpoint(runs) -> None:  # type: ignore[no-untyped-def]
    futures, reference = runs
    r = futures[signal.SIGINT].result(timeout=900)
    text = r["log"]
    assert r["returncode"] == 130, text[-3000:]
    assert "error: interrupted during epoch 2" in text
    assert "--resume" in text
    assert "Traceback" not in text
    assert r["epochs_done"] == 1
    assert not r["tmp_files"], "a temporary file was left behind"
    assert r["resumed"].returncode == 0, r["resumed"].stderr[-3000:]
    _assert_same_run(r["out"], reference())


def test_resume_without_a_run_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from imagefit.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["train", "--resume", "--out", str(tmp_path / "nothing")])
    assert exc.value.code not in (0, None)
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "--resume" in lines[0], lines


def test_resume_with_a_damaged_state_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from imagefit.cli import main

    state = tmp_path / "run" / "checkpoint" / "run_state.json"
    state.parent.mkdir(parents=True)
    state.write_text('{"config": ')
    with pytest.raises(SystemExit) as exc:
        main(["train", "--resume", "--out", str(tmp_path / "run")])
    assert exc.value.code not in (0, None)
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "damaged" in lines[0], lines
