"""The MLflow side of a run, in its own low-priority process (``python -m imagefit.tracking.mlflow_worker``).

Started by :class:`~imagefit.tracking.mlflow.MLflowLogger`, so that importing
mlflow (seconds of CPU) and every call to the tracking server happen beside
the training, never in its way. It reads JSON lines on stdin, in the order the
training sent them:

- ``init``: tracking URI, experiment, run name, run key and the resolved config;
- ``resume``: continue the MLflow run of an interrupted training (by id, else by its run key);
- ``begin``: create the run (and log the parameters) if not done yet;
- ``metrics``: one epoch's metrics at a step (all the epochs waiting are sent in one batch);
- ``end``: final metrics, the artifacts, the run marked FINISHED; then it exits.

It replies on stdout: ``{"run_id": ...}`` once the run exists, and last
``{"done": true}`` or ``{"error": "..."}``, with its CPU seconds. At the first
failed call it stops (a server that is down would make every later call wait
through its retries) and says why. End of input without ``end`` (the training
stopped) marks the run KILLED; ``resume`` sets it RUNNING again.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import Any

# Tag naming the training a run belongs to, so that a resume finds the run even
# when its id had not reached the checkpoint yet.
RUN_KEY_TAG = "imagefit.run_key"
MAX_PARAMS, MAX_METRICS = 100, 1000  # MLflow's limits per log_batch call
UPLOADS = 4  # artifact uploads at once at the end


def flat_params(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"train": {"lr": 0.1}}`` -> ``{"train.lr": "0.1"}``; lists as JSON."""
    out: dict[str, str] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(flat_params(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = json.dumps(value) if isinstance(value, (list, tuple)) else str(value)
    return out


def reply(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


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

        The training waits for this step: the calls go out side by side (each
        is mostly a round trip to the server), the largest file first.
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


def messages() -> Any:
    """Lists of the messages that arrived together (read as they come, so a backlog goes out in one batch)."""
    buffer = b""
    while chunk := os.read(sys.stdin.fileno(), 1 << 16):
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        yield [json.loads(line) for line in lines if line.strip()]


def run() -> bool:
    """Serve one training; True when its run was logged to the end."""
    session: Session | None = None
    ended = False
    try:
        for batch in messages():
            for message in batch:
                if message.get("op") == "init":
                    session = Session(message)
                elif session is not None and handle(session, message):
                    ended = True
            if ended:
                break
            if session is not None:
                session.flush()
        if not ended and session is not None:
            session.flush()
            if session.run_id is not None:
                session.client.set_terminated(session.run_id, "KILLED")
    except Exception as exc:  # any failure becomes the one line the training prints
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        reply({"error": f"{type(exc).__name__}: {first}", "cpu_s": _cpu()})
        return False
    reply({"done": ended, "cpu_s": _cpu()})
    return True


def _cpu() -> float:
    t = os.times()
    return round(t.user + t.system, 3)


def main() -> int:
    # Ctrl-C stops the training, which then closes this process's input: the
    # metrics already sent are logged first, so the signal itself is ignored.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        os.nice(19)  # the training comes first; at its end it waits, and this process has the CPU
    except OSError:
        pass
    return 0 if run() else 1


if __name__ == "__main__":
    sys.exit(main())
