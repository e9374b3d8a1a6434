"""Child processes that tests start: bounded, and killed with everything they started."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest


def run_bounded(
    cmd: list[str], env: dict[str, str], what: str, *, timeout: float = 300, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` to the end, or fail the test after ``timeout`` s saying ``what`` did not finish.

    Its own session, so a run past the limit is killed with every process it started (torchrun's
    ranks: subprocess.run's timeout kills torchrun alone and leaves the ranks running).
    """
    with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd, start_new_session=True) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            pytest.fail(f"{what} did not finish in {timeout:g} s:\n{out[-2000:]}\n{err[-4000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)
