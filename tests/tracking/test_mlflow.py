"""MLflow against a real local tracking server (SQLite store, loopback), started and stopped here."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytest.importorskip("mlflow", reason="MLflow tests need the mlflow extra: pip install 'imagefit[mlflow]'")

from mlflow import MlflowClient

from imagefit.tracking import MLflowLogger, log_run_end, run_loggers

START_TIMEOUT = 180  # seconds: the first start creates the SQLite schema (slow on a busy 2-core machine)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``mlflow server`` on 127.0.0.1; always killed (its whole process group) at the end."""
    root = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    log = (root / "server.log").open("wb")
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}"]
    cmd += ["--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=root)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with urllib.request.urlopen(uri + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail(f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield uri
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        log.close()


def test_run_is_recorded_on_the_server(
    mlflow_server: str,
    run_copy: Path,
    tmp_path: Path,
    two_phase_fit: Callable[..., list[dict[str, float]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    config = {"model": {"name": "lite0"}, "train": {"lr": 0.003, "epochs": 3}, "data": {"augment": ["light"]}}
    loggers = run_loggers(run_copy, config)  # the environment asks for MLflow
    mlf = [cb for cb in loggers if isinstance(cb, MLflowLogger)]
    assert len(mlf) == 1
    history = two_phase_fit(loggers, epochs=3)
    metrics = json.loads((run_copy / "metrics.json").read_text())
    log_run_end(loggers, run_copy, metrics)

    client = MlflowClient(mlflow_server)
    run = client.get_run(mlf[0].run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == run_copy.name
    assert run.data.params["train.lr"] == "0.003" and run.data.params["model.name"] == "lite0"
    assert run.data.params["data.augment"] == '["light"]'
    head = client.get_metric_history(run.info.run_id, "head_val_loss")
    assert [m.step for m in head] == [0, 1, 2]
    assert [round(m.value, 5) for m in head] == [round(h["val_loss"], 5) for h in history[:3]]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "backbone_lr")] == [3, 4, 5]
    assert run.data.metrics["final_accuracy"] == metrics["accuracy"]
    top = {f.path for f in client.list_artifacts(run.info.run_id)}
    assert {"report.html", "metrics.json", "predictions.png", "model"} <= top
    model_files = {f.path for f in client.list_artifacts(run.info.run_id, "model")}
    assert model_files == {"model/imagefit.json", "model/model.safetensors"}
    # The model folder that comes back loads and predicts like the original.
    import imagefit

    local = Path(client.download_artifacts(run.info.run_id, "model", str(tmp_path)))
    original, restored = imagefit.load(run_copy), imagefit.load(local)
    assert restored.classes == original.classes and restored.temperature == original.temperature


def test_missing_mlflow_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from imagefit.errors import ConfigError

    monkeypatch.setitem(sys.modules, "mlflow", None)
    with pytest.raises(ConfigError, match=r"pip install 'imagefit\[mlflow\]'"):
        MLflowLogger({})
