"""MLflow against a real local tracking server (SQLite store, loopback), started and stopped here."""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytest.importorskip("mlflow", reason="MLflow tests need the mlflow extra: pip install 'imagefit[mlflow]'")

from mlflow import MlflowClient

from imagefit.tracking import MLflowLogger, log_run_end, mlflow_state, run_loggers, wait_for_mlflow
from imagefit.tracking import mlflow as mlflow_module

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
    notes: list[str] = []
    log_run_end(loggers, run_copy, metrics, note=notes.append)  # returns at once: the worker uploads in the background
    assert len(notes) <= 1 and all("mlflow.json" in n for n in notes)
    state = wait_for_mlflow(run_copy, 120)
    assert state is not None and state["state"] == "finished" and state["run_id"] == mlf[0].run_id, state
    assert state["tracking_uri"] == mlflow_server and state["experiment"] == "imagefit"

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
    """A training with MLflow on: mlflow is imported only in the worker, the training returns without waiting for
    the upload, and every epoch and file still arrives after its process has exited."""
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
        "notes = []\n"
        "log_run_end(loggers, out, json.loads((out / 'metrics.json').read_text()), note=notes.append)\n"
        "print(json.dumps({'mlflow_imported': 'mlflow' in sys.modules, 'notes': notes, 'pid': loggers[-1].child.proc.pid}))\n"
    )
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_server}
    # stderr to a file, not a pipe: the worker keeps a copy of it, and a pipe would stay open until the upload ends.
    with (tmp_path / "stderr").open("w") as err:
        done = subprocess.run([sys.executable, str(script)], env=env, stdout=subprocess.PIPE, stderr=err, text=True, timeout=600)
    assert done.returncode == 0, (tmp_path / "stderr").read_text()[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["mlflow_imported"] is False
    assert result["notes"] == [f"MLflow: the run's files finish uploading in the background ({run_copy / 'mlflow.json'} says when)"]
    state = wait_for_mlflow(run_copy, 150)  # the training's process is gone; its worker is not
    assert state is not None and state["state"] == "finished" and state["pid"] == result["pid"], state
    assert "MLflow" not in (tmp_path / "stderr").read_text()
    client = MlflowClient(mlflow_server)
    run = client.get_run(state["run_id"])
    assert run.info.status == "FINISHED" and run.data.params["train.lr"] == "0.5"
    assert [m.value for m in client.get_metric_history(run.info.run_id, "head_loss")] == [1.0, 0.5, 1 / 3, 0.25]
    assert {f.path for f in client.list_artifacts(run.info.run_id, "model")} == {"model/imagefit.json", "model/model.safetensors"}


def test_no_metric_is_lost_when_the_worker_lags(mlflow_server: str, run_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hundreds of epochs queued while the worker still imports mlflow (more than a pipe holds) all arrive, in order."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    logger = MLflowLogger({"train": {"epochs": 600}}, run_name="lag")
    for epoch in range(600):
        logger.on_epoch_end(_Phase("head"), epoch, {"loss": float(epoch), "val_accuracy": 0.5, "lr": 1e-3})  # type: ignore[arg-type]
    logger.log_run_end(run_copy, json.loads((run_copy / "metrics.json").read_text()))
    assert logger.wait().get("done") is True and logger.worker_cpu_s is not None and logger.worker_cpu_s > 0
    history = MlflowClient(mlflow_server).get_metric_history(str(logger.run_id), "head_loss")
    assert sorted((m.step, m.value) for m in history) == [(e, float(e)) for e in range(600)]


def test_unreachable_server_is_one_warning_before_the_training(run_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that refuses connections is found as the run opens: one line, no worker, the training goes on."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{_free_port()}")
    lines, warn = _warnings()
    logger = MLflowLogger({"train": {"lr": 0.1}}, folder=run_copy, warn=warn)
    assert logger.child is None
    logger.on_train_begin(_Phase("head"))  # type: ignore[arg-type]
    logger.on_epoch_end(_Phase("head"), 0, {"loss": 1.0})  # type: ignore[arg-type]
    logger.log_run_end(run_copy, {"accuracy": 0.5}, note=lines.append)
    assert len(lines) == 1 and lines[0].startswith("MLflow server http://127.0.0.1:") and "cannot be reached (" in lines[0]
    assert "not logged to MLflow" in lines[0] and str(run_copy) in lines[0] and mlflow_state(run_copy) is None


def test_a_server_that_never_answers_is_found_within_the_probe_time(run_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Connections accepted, no answer ever: one line after the probe's time, not a training that hangs."""
    monkeypatch.setattr(mlflow_module, "PROBE_TIMEOUT", 1.0)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # the kernel completes the handshakes; nobody ever reads
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{silent.getsockname()[1]}")
        lines, warn = _warnings()
        t0 = time.monotonic()
        logger = MLflowLogger({}, warn=warn)
        assert time.monotonic() - t0 < 10
    assert logger.child is None and len(lines) == 1 and "no answer within 1 s" in lines[0]


class _FakeServer(http.server.BaseHTTPRequestHandler):
    """Answers the probe (404, as MLflow does for an unknown experiment); then every call fails or hangs."""

    mode = "fail"
    calls = 0

    def _answer(self) -> None:
        type(self).calls += 1
        if type(self).calls > 1 and self.mode == "hang":
            time.sleep(60)  # longer than the test's timeout: the worker must give up on its own
            return
        body = b'{"error_code": "INTERNAL_ERROR", "message": "the store is broken"}'
        self.send_response(404 if type(self).calls == 1 else 500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("mode", ["fail", "hang"])
def test_a_failure_after_the_training_returned_is_one_line_and_in_the_state(
    run_copy: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str], mode: str
) -> None:
    """The server answers the probe, then errors (or never answers): the training has returned; the worker marks the
    state failed and says so in one line on the training's stderr (within IMAGEFIT_MLFLOW_TIMEOUT when it hangs)."""
    handler = type("Handler", (_FakeServer,), {"mode": mode, "calls": 0})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{server.server_address[1]}")
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        # Hanging: stopped 3 s after the end (mlflow is imported within them: a short training defers it).
        monkeypatch.setenv("IMAGEFIT_MLFLOW_TIMEOUT", "3" if mode == "hang" else "120")
        logger = MLflowLogger({"train": {"lr": 0.1}}, folder=run_copy)
        logger.on_epoch_end(_Phase("head"), 0, {"loss": 1.0})  # type: ignore[arg-type]
        logger.log_run_end(run_copy, {"accuracy": 0.5})
        state = wait_for_mlflow(run_copy, 90)
    finally:
        server.shutdown()
    assert state is not None and state["state"] == "failed", state
    logger.child.proc.wait(10)  # type: ignore[union-attr]
    lines = [ln for ln in capfd.readouterr().err.splitlines() if "MLflow" in ln]
    assert len(lines) == 1 and lines[0].startswith("warning: MLflow logging ") and str(run_copy) in lines[0], lines
    if mode == "hang":
        assert "did not finish within 3 s" in state["error"] and "IMAGEFIT_MLFLOW_TIMEOUT" in lines[0]
    else:
        assert "failed (" in lines[0] and "Traceback" not in lines[0]


def test_a_worker_gone_without_a_word_reads_as_stopped(tmp_path: Path) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    (tmp_path / "mlflow.json").write_text(json.dumps({"state": "logging", "pid": int(gone.stdout)}))
    assert mlflow_state(tmp_path) == {"state": "stopped", "pid": int(gone.stdout)}
    assert wait_for_mlflow(tmp_path, 5) == {"state": "stopped", "pid": int(gone.stdout)}
    assert mlflow_state(tmp_path / "nothing") is None


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
    second.log_run_end(run_copy, {"accuracy": 0.75})
    assert second.wait().get("done") is True and second.run_id == run_id
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
    run = imagefit.train(sample / "train", val=sample / "val", out=tmp_path / "run", epochs=2, progress=False)
    assert (run.path / "imagefit.json").is_file()
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "MLflow" in ln]
    assert len(lines) == 1 and lines[0].startswith("warning: MLflow server http://127.0.0.1:") and "Traceback" not in err


def test_a_short_training_pays_none_of_the_workers_cpu(mlflow_server: str, run_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker imports mlflow and talks to the server only after DEFER_S seconds of training or its end."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    logger = MLflowLogger({"train": {"lr": 0.3}}, run_name="deferred", folder=run_copy)
    logger.on_train_begin(_Phase("head"))  # type: ignore[arg-type]
    logger.on_epoch_end(_Phase("head"), 0, {"loss": 1.0})  # type: ignore[arg-type]
    time.sleep(5)  # long enough to import mlflow and create the run, had it started
    state = mlflow_state(run_copy)
    assert state is not None and state["state"] == "logging" and "tracking_uri" not in state and logger.run_id is None
    logger.log_run_end(run_copy, {"accuracy": 0.5})
    assert logger.wait().get("done") is True
    assert MlflowClient(mlflow_server).get_run(str(logger.run_id)).data.params["train.lr"] == "0.3"
