"""MLflow run records (``--mlflow``, or ``MLFLOW_TRACKING_URI`` set).

Parameters (the resolved config, flattened), per-epoch metrics
(``<phase>_<name>``, one step per epoch across phases), final validation
metrics, and as artifacts the report, its images, ``metrics.json`` and the
model folder (``model/``: ``imagefit.json`` + ``model.safetensors``, which
:func:`imagefit.load` reads after ``mlflow artifacts download``).

mlflow is an optional extra (``pip install 'imagefit[mlflow]'``). The training
process never imports it: :class:`MLflowLogger` starts
:mod:`imagefit.tracking.mlflow_worker` in a low-priority process as the run
opens, and only queues messages for it. That process imports mlflow and talks
to the server through :class:`mlflow.MlflowClient` with an explicit run id
while the training runs. The training never waits for it: at the end it hands
over the final metrics and the files and returns; the worker finishes the
upload in the background, at most ``IMAGEFIT_MLFLOW_TIMEOUT`` seconds (default
:data:`DEFAULT_TIMEOUT`), and keeps the run folder's ``mlflow.json`` saying
where it stands (:func:`mlflow_state`, :func:`wait_for_mlflow`). What fails is
one warning line on the training's stderr, never an error of the training (the
run folder holds everything). An HTTP tracking server that cannot be reached is
found before the training starts (one request, :data:`PROBE_TIMEOUT`), said in
one line, and the run is not logged to MLflow.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ImagefitError, invalid
from ..paths import atomic_write_bytes
from ..train.callbacks import Callback, TrainerLike
from ._child import Child, Reply
from ._metrics import epoch_scalars, scalars
from .mlflow_worker import DEFAULT_TIMEOUT, STATE_FILE

EXPERIMENT = "imagefit"
WORKER = "imagefit.tracking.mlflow_worker"
# Run-folder files logged as artifacts (the model files go under model/).
REPORT_FILES = ("report.html", "metrics.json", "history.csv", "history.png", "confusion.png", "reliability.png", "predictions.png")
MODEL_FILES = ("imagefit.json", "model.safetensors")
TIMEOUT_ENV = "IMAGEFIT_MLFLOW_TIMEOUT"
PROBE_TIMEOUT = 5.0  # seconds an HTTP tracking server has to answer before the training starts


def mlflow_requested(flag: bool | None) -> bool:
    """``--mlflow`` if given, else whether ``MLFLOW_TRACKING_URI`` is set."""
    return bool(os.environ.get("MLFLOW_TRACKING_URI")) if flag is None else flag


def end_timeout() -> float:
    """Seconds the end of a training waits for MLflow logging (``IMAGEFIT_MLFLOW_TIMEOUT``).

    Raises:
        ConfigError: the variable is not a positive number.
    """
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise invalid(TIMEOUT_ENV, raw, "a number of seconds > 0")
    return value


def stderr_warning(message: str) -> None:
    """Where warnings go without a UI: one line on stderr."""
    sys.stderr.write(f"warning: {message}\n")


def _run_id_setter(logger: MLflowLogger) -> Callable[[Reply], None]:
    # Through a weak reference: the reader thread must not keep a dropped logger (and its finalizer) alive.
    ref = weakref.ref(logger)

    def on_reply(reply: Reply) -> None:
        target = ref()
        if target is not None and reply.get("run_id"):
            target.run_id = str(reply["run_id"])

    return on_reply


def probe(tracking_uri: str | None, experiment: str, timeout: float | None = None) -> str | None:
    """Why an HTTP(S) tracking server cannot be reached, or None (answered, or not an HTTP URI).

    Any HTTP answer counts, an error status included (a server that wants a
    login still exists); no answer within ``timeout`` does not.
    """
    if not tracking_uri or urllib.parse.urlsplit(tracking_uri).scheme not in ("http", "https"):
        return None
    timeout = PROBE_TIMEOUT if timeout is None else timeout
    query = urllib.parse.urlencode({"experiment_name": experiment})
    url = f"{tracking_uri.rstrip('/')}/api/2.0/mlflow/experiments/get-by-name?{query}"
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return None
    except urllib.error.HTTPError:
        return None
    except TimeoutError:
        return f"no answer within {timeout:g} s"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"no answer within {timeout:g} s" if isinstance(reason, TimeoutError) else str(reason)


def mlflow_state(folder: str | Path) -> dict[str, Any] | None:
    """What the run folder's ``mlflow.json`` says (``state``: logging, finished, failed, stopped), or None.

    A worker that is gone while the file still says ``logging`` (killed) reads as ``stopped``.
    """
    state = _read_state(folder)
    if state is not None and state.get("state") == "logging" and not _alive(state.get("pid")):
        state = _read_state(folder) or state  # it may have written its last word as it exited
        if state.get("state") == "logging":
            state = {**state, "state": "stopped"}
    return state


def _read_state(folder: str | Path) -> dict[str, Any] | None:
    try:
        state = json.loads((Path(folder) / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


# Workers started by this process: one that has exited stays a zombie (os.kill finds it) until polled.
_WORKERS: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    proc = _WORKERS.get(pid)
    if proc is not None:
        return bool(proc.poll() is None)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def wait_for_mlflow(folder: str | Path, timeout: float = DEFAULT_TIMEOUT + 10) -> dict[str, Any] | None:
    """Wait until the run's MLflow logging has ended (for a script that reads MLflow right after training).

    Returns the final :func:`mlflow_state` (None for a run logged without MLflow);
    past ``timeout`` seconds, the state as it is.
    """
    deadline = time.monotonic() + timeout
    while True:
        state = mlflow_state(folder)
        if state is None or state.get("state") != "logging" or time.monotonic() > deadline:
            return state
        time.sleep(0.1)


class MLflowLogger(Callback):
    """Logs one imagefit run to MLflow (one instance for every phase of a run), through a worker process.

    Args:
        config: The resolved config, logged as parameters (``train.lr``...).
        run_name: The MLflow run's name (the run folder's name).
        tracking_uri: Default ``MLFLOW_TRACKING_URI``, else MLflow's default (``./mlruns``).
        experiment: Experiment name (``MLFLOW_EXPERIMENT_NAME`` or ``imagefit``).
        folder: The run folder, where the worker keeps ``mlflow.json`` (else known at the end).
        warn: Where the line about an unreachable server goes.

    Raises:
        ConfigError: mlflow is not installed, or ``IMAGEFIT_MLFLOW_TIMEOUT`` is not a positive number.
    """

    def __init__(
        self,
        config: dict[str, Any],
        run_name: str = "",
        tracking_uri: str | None = None,
        experiment: str | None = None,
        folder: Path | None = None,
        warn: Callable[[str], None] = stderr_warning,
    ):
        if importlib.util.find_spec("mlflow") is None:
            raise ConfigError("--mlflow needs the mlflow package: pip install 'imagefit[mlflow]'")
        self.timeout = end_timeout()
        self.tracking_uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or None
        self.experiment = experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT
        self.run_name = run_name
        self.run_key = uuid.uuid4().hex
        self.run_id: str | None = None
        self.step = 0
        self.worker_cpu_s: float | None = None  # the worker's CPU seconds, once it has finished
        self.child: Child | None = None
        self._out: Path | None = None
        unreachable = probe(self.tracking_uri, self.experiment)
        if unreachable is not None:
            where = f" ({folder} has everything)" if folder else ""
            warn(f"MLflow server {self.tracking_uri} cannot be reached ({unreachable}): this run is not logged to MLflow{where}")
            return
        self.child = Child(WORKER, on_reply=_run_id_setter(self))
        _WORKERS[self.child.proc.pid] = self.child.proc
        if folder is not None:
            self._first_state(Path(folder))
        # A training that fails and is dropped closes the worker's input: it logs what it got, marks the run KILLED.
        weakref.finalize(self, self.child.close)
        init = {"tracking_uri": self.tracking_uri, "experiment": self.experiment, "run_name": run_name or None}
        self._send({"op": "init", "run_key": self.run_key, "config": config, "folder": str(folder) if folder else None, **init})

    def _send(self, message: dict[str, Any]) -> None:
        if self.child is not None:
            self.child.send(message)

    def on_train_begin(self, trainer: TrainerLike) -> None:
        self._send({"op": "begin"})

    def on_epoch_end(self, trainer: TrainerLike, epoch: int, logs: dict[str, float]) -> None:
        values = {k.replace("/", "_"): v for k, v in epoch_scalars(getattr(trainer, "phase", ""), logs).items()}
        self._send({"op": "metrics", "values": values, "time": int(time.time() * 1000), "step": self.step})
        self.step += 1

    def log_run_end(self, out: Path, metrics: dict[str, Any], note: Callable[[str], None] | None = None) -> None:
        """Hand the worker the final metrics (``final_<name>``), the report files and the model folder; returns at once.

        The worker uploads them in the background; ``note`` gets one line that says
        so. Nothing here raises for MLflow's sake: a failure is the worker's one warning line.
        """
        self.send_end(out, metrics)
        self.release(note)

    def send_end(self, out: Path, metrics: dict[str, Any]) -> None:
        """Hand the worker the final metrics and the files to upload (returns at once)."""
        out = Path(out)
        files = [[str(out / n), ""] for n in REPORT_FILES if (out / n).is_file()]
        files += [[str(out / n), "model"] for n in MODEL_FILES if (out / n).is_file()]
        values = {"final_" + k.replace("/", "_"): v for k, v in scalars(metrics).items()}
        end = {"op": "end", "values": values, "time": int(time.time() * 1000), "step": self.step, "files": files}
        if self.child is not None and not (out / STATE_FILE).is_file():
            self._first_state(out)  # the worker learns the folder only now
        self._send({**end, "folder": str(out), "timeout": self.timeout})
        self._out = out

    def _first_state(self, folder: Path) -> None:
        # Written here, before the worker can know the folder (it writes every later state), so that
        # whoever looks as soon as the training returns finds the file.
        if self.child is not None:
            first = json.dumps({"state": "logging", "pid": self.child.proc.pid}).encode()
            try:
                atomic_write_bytes(folder / STATE_FILE, first, durable=False)
            except (ImagefitError, OSError):
                pass  # a folder that cannot take it: the worker's own writes will fail the same way, quietly

    def release(self, note: Callable[[str], None] | None = None) -> None:
        """End the worker's input and let it finish on its own; ``note`` hears where to look."""
        if self.child is None:
            return
        # The messages are in the pipe before this returns (the worker reads it whatever it is doing):
        # a process that exits right after would otherwise drop them with its sender thread.
        self.child.close(wait=10.0)
        if note is not None and self._out is not None and self.child.proc.poll() is None:
            note(f"MLflow: the run's files finish uploading in the background ({self._out / STATE_FILE} says when)")

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
        """Wait for the worker to end (at most ``timeout`` seconds, default its own limit + 10 s); its last reply.

        For callers that read MLflow right after the training (tests, benchmarks).
        """
        if self.child is None:
            return {}
        self.child.close(wait=10.0)
        try:
            self.child.proc.wait(self.timeout + 10 if timeout is None else timeout)
        except subprocess.TimeoutExpired:
            return {}
        self.child.drain()
        last = self.child.replies[-1] if self.child.replies else {}
        self.worker_cpu_s = last.get("cpu_s")
        return last

    def state_dict(self) -> dict[str, Any]:
        # A resumed run goes on logging into the same MLflow run (found by its key if its id was not known yet).
        return {"run_id": self.run_id, "run_key": self.run_key, "step": self.step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.run_id = state.get("run_id") or self.run_id
        self.run_key = state.get("run_key") or self.run_key
        self.step = int(state.get("step", 0))
        self._send({"op": "resume", "run_id": self.run_id, "run_key": self.run_key})
