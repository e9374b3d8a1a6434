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
    # No job runner (seven more processes, for MLflow's GenAI jobs): nothing here uses it.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=root, env=env)
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


class _Phase:
    """The one thing the loggers read from a trainer."""

    def __init__(self, phase: str):
        self.phase = phase


def _warnings() -> tuple[list[str], Callable[[str], None]]:
    lines: list[str] = []
    return lines, lines.append


def test_training_process_never_imports_mlflow(mlflow_server: str, run_copy: Path, tmp_path: Path) -> None:
    """A training with MLflow on: mlflow is imported only in the worker, and every epoch and file still arrives."""
    script = tmp_path / "train.py"
    script.write_text(
        "import json, sys\n"
        "from pathlib import Path\n"
        "from imagefit.tracking import log_run_end, run_loggers\n"
        "class T:\n    phase = 'head'\n"
        f"out = Path({str(run_copy)!r})\n"
        "loggers = run_loggers(out, {'train': {'lr': 0.5}}, mlflow=True)\n"
        "for cb in loggers: cb.on_train_begin(T())\n"
        "for e in range(4):\n"
        "    for cb in loggers: cb.on_epoch_end(T(), e, {'loss': 1.0 / (e + 1), 'lr': 0.5})\n"
        "warnings = []\n"
        "log_run_end(loggers, out, json.loads((out / 'metrics.json').read_text()), warn=warnings.append)\n"
        "print(json.dumps({'mlflow_imported': 'mlflow' in sys.modules, 'warnings': warnings, 'run_id': loggers[-1].run_id}))\n"
    )
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_server}
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["mlflow_imported"] is False and result["warnings"] == []
    client = MlflowClient(mlflow_server)
    run = client.get_run(result["run_id"])
    assert run.info.status == "FINISHED" and run.data.params["train.lr"] == "0.5"
    assert [m.value for m in client.get_metric_history(run.info.run_id, "head_loss")] == [1.0, 0.5, 1 / 3, 0.25]
    assert {f.path for f in client.list_artifacts(run.info.run_id, "model")} == {"model/imagefit.json", "model/model.safetensors"}


def test_no_metric_is_lost_when_the_worker_lags(mlflow_server: str, run_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hundreds of epochs queued while the worker still imports mlflow (more than a pipe holds) all arrive, in order."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    logger = MLflowLogger({"train": {"epochs": 600}}, run_name="lag")
    for epoch in range(600):
        logger.on_epoch_end(_Phase("head"), epoch, {"loss": float(epoch), "val_accuracy": 0.5, "lr": 1e-3})  # type: ignore[arg-type]
    lines, warn = _warnings()
    logger.log_run_end(run_copy, json.loads((run_copy / "metrics.json").read_text()), warn)
    assert lines == [] and logger.worker_cpu_s is not None and logger.worker_cpu_s > 0
    history = MlflowClient(mlflow_server).get_metric_history(str(logger.run_id), "head_loss")
    assert sorted((m.step, m.value) for m in history) == [(e, float(e)) for e in range(600)]


def test_unreachable_server_is_one_warning(run_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that refuses connections: the run ends normally, with one warning line that says so."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{_free_port()}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    logger = MLflowLogger({"train": {"lr": 0.1}})
    logger.on_train_begin(_Phase("head"))  # type: ignore[arg-type]
    logger.on_epoch_end(_Phase("head"), 0, {"loss": 1.0})  # type: ignore[arg-type]
    lines, warn = _warnings()
    logger.log_run_end(run_copy, {"accuracy": 0.5}, warn)
    assert len(lines) == 1 and lines[0].startswith("MLflow logging failed (") and str(run_copy) in lines[0]
    assert "Traceback" not in lines[0] and logger.child.proc.returncode is not None


def test_a_server_that_never_answers_is_cut_off_at_the_timeout(run_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Connections accepted, no answer ever: the end of the training waits the timeout, warns, and stops the worker."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # the kernel completes the handshakes; nobody ever reads
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{silent.getsockname()[1]}")
        monkeypatch.setenv("IMAGEFIT_MLFLOW_TIMEOUT", "3")
        logger = MLflowLogger({})
        logger.on_epoch_end(_Phase("head"), 0, {"loss": 1.0})  # type: ignore[arg-type]
        lines, warn = _warnings()
        logger.log_run_end(run_copy, {"accuracy": 0.5}, warn)
    assert len(lines) == 1 and "did not finish within 3 s" in lines[0] and "IMAGEFIT_MLFLOW_TIMEOUT" in lines[0]
    assert logger.child.proc.returncode is not None  # stopped, not left behind


@pytest.mark.parametrize("id_known", [True, False])
def test_resume_continues_the_same_run(mlflow_server: str, run_copy: Path, monkeypatch: pytest.MonkeyPatch, id_known: bool) -> None:
    """An interrupted training (its worker sees end of input) resumed from its checkpoint state logs into the same run.

    Without the id in the state (the checkpoint was written before the worker created the run), the run is found by its key.
    """
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    first = MLflowLogger({"train": {"lr": 0.2}}, run_name="resumed")
    first.on_train_begin(_Phase("head"))  # type: ignore[arg-type]
    for epoch in range(2):
        first.on_epoch_end(_Phase("head"), epoch, {"loss": float(epoch)})  # type: ignore[arg-type]
    assert first.child.finish(120)  # the training stops: what was sent is logged, the run marked KILLED
    state = first.state_dict()  # the last checkpoint's
    run_id = str(first.run_id)
    client = MlflowClient(mlflow_server)
    assert client.get_run(run_id).info.status == "KILLED"
    if not id_known:
        state = {**state, "run_id": None}
    second = MLflowLogger({"train": {"lr": 0.2}}, run_name="resumed")
    second.load_state_dict(state)
    second.on_epoch_end(_Phase("head"), 2, {"loss": 2.0})  # type: ignore[arg-type]
    lines, warn = _warnings()
    second.log_run_end(run_copy, {"accuracy": 0.75}, warn)
    assert lines == [] and second.run_id == run_id
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.metrics["final_accuracy"] == 0.75
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "head_loss")] == [(0, 0.0), (1, 1.0), (2, 2.0)]


def test_bad_timeout_setting_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from imagefit.errors import ConfigError

    monkeypatch.setenv("IMAGEFIT_MLFLOW_TIMEOUT", "soon")
    with pytest.raises(ConfigError, match="received"):
        MLflowLogger({})


def test_a_training_with_mlflow_down_succeeds_with_one_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The whole wiring: `imagefit.train` with MLflow asked for and no server finishes its run and says so once."""
    import imagefit

    sample = Path(imagefit.__file__).parent / "sample_data"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{_free_port()}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    run = imagefit.train(sample / "train", val=sample / "val", out=tmp_path / "run", epochs=2, progress=False)
    assert (run.path / "imagefit.json").is_file()
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "MLflow" in ln]
    assert len(lines) == 1 and lines[0].startswith("warning: MLflow logging failed (") and "Traceback" not in err
