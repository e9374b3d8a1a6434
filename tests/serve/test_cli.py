"""``imagefit serve``: options reach the server, errors are one line, and the real command serves."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from imagefit import cli

from .conftest import CAT


def test_serve_passes_options(monkeypatch: pytest.MonkeyPatch, trained_run: Path) -> None:
    from imagefit.serve import app as app_module

    seen: dict[str, object] = {}

    def fake(settings: app_module.ServeSettings, **kw: object) -> None:
        seen["settings"] = settings
        seen.update(kw)

    monkeypatch.setattr(app_module, "serve", fake)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["serve", str(trained_run), "--port", "9123", "--batch-window-ms", "0", "--max-files", "4", "--timeout-s", "5"])
    assert exit_info.value.code == 0
    s = seen["settings"]
    assert isinstance(s, app_module.ServeSettings)
    assert (s.run_path, s.batch_window_ms, s.max_files, s.timeout_s) == (str(trained_run), 0.0, 4, 5.0)
    assert seen["port"] == 9123 and seen["host"] == "127.0.0.1" and seen["workers"] == 1


def test_serve_bad_run_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["serve", str(tmp_path / "missing")])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: run folder not found")


def test_serve_command_serves(trained_run: Path) -> None:
    """The real command in a subprocess: port 0, address read from uvicorn's log line."""
    env = {**os.environ, "IMAGEFIT_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "imagefit", "serve", str(trained_run), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        url, lines, deadline = None, [], time.monotonic() + 120
        assert proc.stdout is not None
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            m = re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", line)
            url = m.group(1) if m else None
        assert url, "".join(lines)
        assert httpx.get(url + "/health", timeout=10, trust_env=False).json()["status"] == "ok"
        r = httpx.post(url + "/predict", files={"files": (CAT.name, CAT.read_bytes(), "image/jpeg")}, timeout=30, trust_env=False)
        assert r.status_code == 200 and r.json()["predictions"][0]["label"] == "cats"
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
