"""The MLflow side of a run, in its own low-priority process (``python -m imagefit.tracking.mlflow_worker``).

Started by :class:`~imagefit.tracking.mlflow.MLflowLogger`, so that importing
mlflow (seconds of CPU) and every call to the tracking server happen beside
the training, never in its way: at nice 19, and only once the training has run
:data:`DEFER_S` seconds (its metrics then go out live) or has ended (a short
training gets none of this CPU taken from it). It reads JSON lines on stdin,
in the order the training sent them:

- ``init``: tracking URI, experiment, run name, run key and the resolved config;
- ``resume``: continue the MLflow run of an interrupted training (by id, else by its run key);
- ``begin``: create the run (and log the parameters) if not done yet;
- ``metrics``: one epoch's metrics at a step (all the epochs waiting are sent in one batch);
- ``end``: final metrics, the artifacts, the run marked FINISHED; then it exits.

It replies on stdout: ``{"run_id": ...}`` once the run exists. Its state goes
to the run folder's ``mlflow.json`` (:data:`STATE_FILE`): ``logging`` while
the training runs and the files upload, then ``finished`` or ``failed`` (with
the reason and the MLflow run id), so that the training never waits for it: it
returns at once and this process finishes the upload in the background, at
most ``IMAGEFIT_MLFLOW_TIMEOUT`` seconds after the end of the training. At the
first failed call it stops (a server that is down would make every later call
wait through its retries), marks the state ``failed`` and writes one warning
line to the training's stderr (the terminal or log that started it). End of
input without ``end`` (the training stopped) marks the run KILLED; ``resume``
sets it RUNNING again.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ImagefitError
from ..paths import atomic_write_bytes
from ._child import NOTIFY_FD_ENV  # the training's stderr

# Tag naming the training a run belongs to, so that a resume finds the run even
# when its id had not reached the checkpoint yet.
RUN_KEY_TAG = "imagefit.run_key"
MAX_PARAMS, MAX_METRICS = 100, 1000  # MLflow's limits per log_batch call
UPLOADS = 4  # artifact uploads at once at the end
STATE_FILE = "mlflow.json"  # in the run folder
DEFER_S = 150.0  # seconds of training before the worker starts its work (its ~3 s of CPU are then <= 2%)
STARTED = time.monotonic()
DEFAULT_TIMEOUT = 120.0  # seconds after the end of the training: the model upload to a remote server is most of it


def flat_params(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"train": {"lr": 0.1}}`` -> ``{"train.lr": "0.1"}``; lists as JSON."""
    out: dict[str, str] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(flat_params(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = json.dumps(value) if isinstance(value, (list, tuple)) else str(value)
    return out


_replies: int | None = None  # the pipe to the training (see main: not the stdout libraries print to)


def reply(message: dict[str, Any]) -> None:
    """One line to the training; nothing once it has gone (it returned while this process finishes)."""
    global _replies
    if _replies is None:
        return
    try:
        data = (json.dumps(message) + "\n").encode()
        while data:
            data = data[os.write(_replies, data) :]
    except OSError:
        _replies = None


def notify(line: str) -> None:
    """One line on the training's stderr, if it gave one and it is still open."""
    fd = os.environ.get(NOTIFY_FD_ENV, "")
    if fd.isdigit():
        try:
            os.write(int(fd), (line.rstrip("\n") + "\n").encode("utf-8", "replace"))
        except OSError:
            pass


class State:
    """The run folder's ``mlflow.json``: what became of the MLflow run, for whoever looks after the training returned."""

    def __init__(self) -> None:
        self.path: Path | None = None
        self.fields: dict[str, Any] = {"state": "logging", "pid": os.getpid()}
        self._lock = threading.Lock()  # the input reader, the deadline and the main thread all write it

    def at(self, folder: str | None) -> None:
        if folder and self.path is None:
            self.path = Path(folder) / STATE_FILE
            self.update()

    def update(self, **fields: Any) -> None:
        with self._lock:
            if self.fields["state"] != "logging":
                return  # the last word is said once (the deadline and a late failure may race)
            self.fields.update({k: v for k, v in fields.items() if v is not None})
            self._write()

    def _write(self) -> None:
        if self.path is None:
            return
        try:
            # Readers see the old state or the new one, never half of one.
            atomic_write_bytes(self.path, (json.dumps(self.fields, indent=1) + "\n").encode(), durable=False)
        except (ImagefitError, OSError):
            pass  # a run folder removed since: nobody is left to read it


class Session:
    """One MLflow run, logged through :class:`mlflow.MlflowClient` with an explicit run id."""

    def __init__(self, init: dict[str, Any]):
        from mlflow import MlflowClient

        self.client = MlflowClient(tracking_uri=init.get("tracking_uri") or None)
        self.experiment = str(init["experiment"])
        self.run_name = init.get("run_name") or None
        self.run_key = str(init["run_key"])
        self.config: dict[str, Any] = init.get("config") or {}
        self.run_id: str | None = None
        self.pending: list[Any] = []

    def _experiment_id(self) -> str:
        exp = self.client.get_experiment_by_name(self.experiment)
        return str(exp.experiment_id if exp is not None else self.client.create_experiment(self.experiment))

    def ensure_run(self) -> str:
        """The run's id, creating the run and logging the parameters the first time."""
        if self.run_id is None:
            from mlflow.entities import Param

            tags = {"imagefit": "1", RUN_KEY_TAG: self.run_key}
            run = self.client.create_run(self._experiment_id(), run_name=self.run_name, tags=tags)
            self.run_id = run.info.run_id
            reply({"run_id": self.run_id})
            params = [Param(k, v[:6000]) for k, v in flat_params(self.config).items()]
            for i in range(0, len(params), MAX_PARAMS):
                self.client.log_batch(self.run_id, params=params[i : i + MAX_PARAMS])
            self._resolve_artifact_store(self.run_id)
        return self.run_id

    def _resolve_artifact_store(self, run_id: str) -> None:
        # The client looks up a run's artifact store on its first upload and caches it: do that now,
        # while the training runs, rather than in the end step it waits for. (A private method: skipped if gone.)
        resolve = getattr(getattr(self.client, "_tracking_client", None), "_get_artifact_repo", None)
        if resolve is not None:
            try:
                resolve(run_id)
            except Exception:  # the upload itself will say what is wrong
                pass

    def resume(self, run_id: str | None, run_key: str | None) -> None:
        if run_key:
            self.run_key = run_key
        if not run_id and run_key:
            found = self.client.search_runs([self._experiment_id()], filter_string=f"tags.`{RUN_KEY_TAG}` = '{run_key}'", max_results=1)
            run_id = found[0].info.run_id if found else None
        if run_id and run_id != self.run_id:
            self.run_id = run_id
            self.client.update_run(run_id, status="RUNNING")
            reply({"run_id": run_id})
            self._resolve_artifact_store(run_id)

    def add_metrics(self, values: dict[str, float], timestamp: int, step: int) -> None:
        from mlflow.entities import Metric

        self.pending += [Metric(k, float(v), timestamp, step) for k, v in values.items()]

    def flush(self) -> None:
        """Send the metrics waiting, in as few calls as MLflow allows."""
        if self.pending:
            run_id = self.ensure_run()
            for i in range(0, len(self.pending), MAX_METRICS):
                self.client.log_batch(run_id, metrics=self.pending[i : i + MAX_METRICS])
            self.pending = []

    def end(self, files: list[list[str]]) -> None:
        """Log the metrics waiting and ``files`` (``[path, artifact folder or ""]``), then mark the run FINISHED.

        The calls go out side by side (each is mostly a round trip to the
        server), the largest file first.
        """
        from concurrent.futures import ThreadPoolExecutor

        run_id = self.ensure_run()
        files = sorted(files, key=lambda f: -os.path.getsize(f[0]))
        with ThreadPoolExecutor(UPLOADS) as pool:
            jobs = [pool.submit(self.client.log_artifact, run_id, path, folder or None) for path, folder in files]
            jobs.append(pool.submit(self.flush))
            for job in jobs:
                job.result()
        self.client.set_terminated(run_id, "FINISHED")


def handle(session: Session, message: dict[str, Any]) -> bool:
    """Act on one message; True when it was ``end``."""
    op = message.get("op")
    if op == "resume":
        session.flush()
        session.resume(message.get("run_id"), message.get("run_key"))
    elif op == "begin":
        session.flush()
        session.ensure_run()
    elif op == "metrics":
        session.add_metrics(message["values"], int(message["time"]), int(message["step"]))
    elif op == "end":
        session.add_metrics(message["values"], int(message["time"]), int(message["step"]))
        session.end(message["files"])
        return True
    return False


Arrival = Callable[[dict[str, Any] | None], None]


def _read_stdin(out: queue.SimpleQueue[list[dict[str, Any]] | None], arrived: Arrival) -> None:
    # Read from the start, whatever the main thread is doing (importing mlflow, waiting on a
    # server): a full pipe would make the training wait to hand over its last messages, and
    # the end of the training must be seen when it comes (``arrived``; None at end of input).
    buffer = b""
    try:
        while chunk := os.read(sys.stdin.fileno(), 1 << 16):
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            batch = [json.loads(line) for line in lines if line.strip()]
            for message in batch:
                arrived(message)
            out.put(batch)
    finally:
        arrived(None)
        out.put(None)


def messages(arrived: Arrival) -> Any:
    """Lists of the messages that arrived together (a backlog goes out in one batch)."""
    inbox: queue.SimpleQueue[list[dict[str, Any]] | None] = queue.SimpleQueue()
    threading.Thread(target=_read_stdin, args=(inbox, arrived), name="stdin", daemon=True).start()
    while (batch := inbox.get()) is not None:
        while True:
            try:
                more = inbox.get_nowait()
            except queue.Empty:
                break
            if more is None:
                yield batch
                return
            batch = batch + more
        yield batch


class Deadline:
    """Stops the process ``seconds`` after the training ended (its ``end``, or end of input), saying so.

    Armed from the thread that reads the input, so that a call hanging on a
    server that never answers cannot keep it from being armed.
    """

    def __init__(self, state: State, where: Callable[[], str]):
        self.state, self.where = state, where
        self.seconds = DEFAULT_TIMEOUT
        self.ended = threading.Event()  # the training has ended (its ``end``, or end of input)

    def arrived(self, message: dict[str, Any] | None) -> None:
        if message is not None:
            self.state.at(message.get("folder"))
            self.seconds = float(message.get("timeout", self.seconds))
        if self.ended.is_set() or not (message is None or message.get("op") == "end"):
            return
        self.ended.set()
        # What this process had spent while the training ran (it competed for the CPU then; the rest did not).
        self.state.update(cpu_at_end_s=_cpu())
        timer = threading.Timer(self.seconds, self._expire)
        timer.daemon = True
        timer.start()

    def _expire(self) -> None:
        reason = f"did not finish within {self.seconds:g} s of the end of the training (IMAGEFIT_MLFLOW_TIMEOUT)"
        self.state.update(state="failed", error=reason, cpu_s=_cpu())
        notify(f"warning: MLflow logging {reason} and was stopped: {self.where()} is incomplete")
        os._exit(1)


def run() -> bool:
    """Serve one training; True when its run was logged to the end."""
    session: Session | None = None
    state = State()

    def where() -> str:
        run = f"MLflow run {session.run_id}" if session is not None and session.run_id else "the MLflow run"
        return f"{run} ({state.path.parent} has everything)" if state.path else run

    deadline = Deadline(state, where)
    ended = False
    try:
        for batch in messages(deadline.arrived):
            for message in batch:
                if message.get("op") == "init":
                    # Importing mlflow and talking to the server cost seconds of CPU: a training shorter
                    # than DEFER_S gets none of it taken from it (all happens after it has returned);
                    # a longer one, whose metrics are worth seeing live, shares at most that much with it.
                    deadline.ended.wait(max(0.0, DEFER_S - (time.monotonic() - STARTED)))
                    session = Session(message)
                    state.update(tracking_uri=session.client.tracking_uri, experiment=session.experiment)
                elif session is not None and handle(session, message):
                    ended = True
                if session is not None and session.run_id:
                    state.fields["run_id"] = session.run_id
            if ended:
                break
            if session is not None:
                session.flush()
        if not ended and session is not None:
            session.flush()
            if session.run_id is not None:
                session.client.set_terminated(session.run_id, "KILLED")
    except Exception as exc:  # any failure becomes one line on the training's stderr and in the state file
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        error = f"{type(exc).__name__}: {first}"
        state.update(state="failed", error=error, cpu_s=_cpu())
        reply({"error": error, "cpu_s": _cpu()})
        notify(f"warning: MLflow logging failed ({error}): {where()} is incomplete")
        return False
    state.update(state="finished" if ended else "stopped", finished=time.time(), cpu_s=_cpu())
    reply({"done": ended, "cpu_s": _cpu()})
    return True


def _cpu() -> float:
    t = os.times()
    return round(t.user + t.system, 3)


def main() -> int:
    # Ctrl-C stops the training, which then closes this process's input: the
    # metrics already sent are logged first, so the signal itself is ignored.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Replies get the pipe to the training on a private descriptor; whatever mlflow prints to stdout
    # ("View run ... at ...") goes to the stderr file instead: after the training has returned, a
    # print to its closed pipe failed the upload with BrokenPipeError.
    global _replies
    sys.stdout.flush()
    _replies = os.dup(sys.stdout.fileno())
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    try:
        os.nice(19)  # the training comes first; what is left when it returns is done in the background
    except OSError:
        pass
    return 0 if run() else 1


if __name__ == "__main__":
    sys.exit(main())
