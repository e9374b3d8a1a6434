"""What run records cost a CPU training: ``imagefit train`` without and with TensorBoard (and MLflow).

The main job: ``imagefit train`` (defaults: lite0, ``linear``) on cats_and_dogs_filtered (2000 train
+ 1000 validation photos) with a warm feature cache (one untimed warm-up run first), each run a fresh
``imagefit train`` process timed from start to exit, in alternating rounds of:

- ``plain``: no run records (this bench's child runner hands the run no loggers; there is no switch for it);
- ``tensorboard``: what every run writes;
- ``tensorboard+mlflow``: and MLflow, to a ``mlflow server`` this script starts on loopback with a
  SQLite store and proxied artifacts (stopped at the end).

Besides the wall times it reports a direct cost, which the machine's load barely moves: the time the
training process spends inside the loggers (every hook and the end-of-run logging) plus the CPU time
the MLflow worker process spent before the training ended (when it competed with it). The training
does not wait for the worker's uploads: the script waits for them between runs, untimed, and reports
how long after the training's exit they finished and the worker's whole CPU time. Writes the "Run
records overhead" section of BENCHMARKS.md (``--print-only``: just print).
Usage: ``python bench/tracking_overhead.py [--rounds 5] [--cache DIR] [--print-only]``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import DATA, provenance, update_section
from imagefit.tracking import wait_for_mlflow

VARIANTS = ("plain", "tensorboard", "tensorboard+mlflow")
HOOKS = ("on_train_begin", "on_epoch_end", "on_train_end", "state_dict", "load_state_dict")


# -- the child: one `imagefit train`, loggers as the variant says, time inside them measured ----------------
def _timed(fn: Any, spent: list[float]) -> Any:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - t0

    return wrapper


def child(variant: str, out: str, result: str) -> None:
    from imagefit.cli import main
    from imagefit.tracking import MLflowLogger
    from imagefit.train import finish, session

    spent, made = [0.0], []
    real_loggers = session.run_loggers

    def run_loggers(folder: Path, config: dict[str, Any], *, mlflow: bool | None = None, **kwargs: Any) -> list[Any]:
        if variant == "plain":
            return []
        t0 = time.perf_counter()
        loggers = real_loggers(folder, config, mlflow=variant.endswith("mlflow"), **kwargs)
        spent[0] += time.perf_counter() - t0
        for cb in loggers:
            for hook in HOOKS:
                setattr(cb, hook, _timed(getattr(cb, hook), spent))
        made.extend(loggers)
        return loggers

    session.run_loggers = run_loggers  # type: ignore[assignment]
    end = [0.0]
    finish.log_run_end = _timed(_timed(finish.log_run_end, end), spent)  # type: ignore[assignment]
    t0 = time.perf_counter()
    code = 0
    try:
        main(["train", str(DATA / "train"), "--val", str(DATA / "validation"), "--out", out])
    except SystemExit as exc:
        code = int(exc.code or 0)
    record = {
        "code": code,
        "inside_s": spent[0],
        "end_s": end[0],
        "in_process_s": time.perf_counter() - t0,
        "mlflow": any(isinstance(cb, MLflowLogger) for cb in made),
    }
    Path(result).write_text(json.dumps(record))


# -- the parent: server, warm-up, rounds, table ------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``mlflow server`` on 127.0.0.1 with a SQLite store; waits (at most 180 s) for /health."""
    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}"]
    cmd += ["--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    log = (root / "server.log").open("wb")
    # No job runner: its seven extra processes serve MLflow's GenAI jobs, which a training never uses.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=root, env=env)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(uri + "/health", timeout=2) as r:
                if r.status == 200:
                    return proc, uri
        except OSError:
            time.sleep(0.5)
    stop_server(proc)
    raise SystemExit(f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def session_cpu(sid: int) -> float:
    """CPU seconds used so far by the processes of session ``sid`` (the server and its children), from /proc."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:
            total += sum(int(f) for f in fields[11:15])  # utime, stime, and those of its waited-for children
    return total / os.sysconf("SC_CLK_TCK")


def one_run(tmp: Path, variant: str, name: str, uri: str, server: int) -> dict[str, float]:
    """One ``imagefit train`` process; its wall time from start to exit and what its child runner measured."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    if variant.endswith("mlflow"):
        env["MLFLOW_TRACKING_URI"] = uri
    out, result = tmp / f"run-{name}", tmp / f"result-{name}.json"
    with (tmp / f"log-{name}.txt").open("wb") as log:
        cpu0 = session_cpu(server)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--child", variant, str(out), str(result)], env=env, stdout=log, stderr=log, check=True)
        wall = time.perf_counter() - t0
    exited = time.time()
    record = json.loads(result.read_text())
    if record["code"] != 0:
        raise SystemExit(f"{variant} run failed: {(tmp / f'log-{name}.txt').read_text()[-2000:]}")
    worker = {"worker_cpu_s": 0.0, "worker_cpu_at_end_s": 0.0, "background_s": 0.0}
    if record.pop("mlflow"):
        # Untimed: the uploads the training handed over finish before the next run starts.
        state = wait_for_mlflow(out, 300) or {}
        if state.get("state") != "finished":
            raise SystemExit(f"{variant} run: MLflow logging did not finish: {state}")
        worker = {
            "worker_cpu_s": float(state["cpu_s"]),
            "worker_cpu_at_end_s": float(state.get("cpu_at_end_s", 0.0)),
            "background_s": max(0.0, float(state["finished"]) - exited),
        }
    return {"wall": wall, **record, **worker, "server_cpu_s": session_cpu(server) - cpu0}


def table(runs: dict[str, list[dict[str, float]]]) -> str:
    base = statistics.median(r["wall"] for r in runs["plain"])
    rows = [
        "| run records | median wall time (s) | all rounds (s) | vs plain | inside the loggers (s) | of which the end (s) "
        "| worker CPU during the training (s) | direct cost, % of plain | worker CPU in all (s) | uploads done after exit (s) | server CPU (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def med(v: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[v])

    for v in VARIANTS:
        walls = [r["wall"] for r in runs[v]]
        inside, during = med(v, "inside_s"), med(v, "worker_cpu_at_end_s")
        direct = f"{100 * (inside + during) / base:.2f}%" if v != "plain" else "-"
        rows.append(
            f"| {v} | {med(v, 'wall'):.2f} | {', '.join(f'{w:.2f}' for w in walls)} | {100 * (med(v, 'wall') / base - 1):+.1f}% | "
            f"{inside:.3f} | {med(v, 'end_s'):.3f} | {during:.2f} | {direct} | {med(v, 'worker_cpu_s'):.2f} | "
            f"{med(v, 'background_s'):.2f} | {med(v, 'server_cpu_s'):.2f} |"
        )
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--cache", help="feature cache folder to use (default: a fresh one, filled by the warm-up run)")
    ap.add_argument("--print-only", action="store_true", help="print the table, leave BENCHMARKS.md alone")
    ap.add_argument("--child", nargs=3, metavar=("VARIANT", "OUT", "RESULT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    runs: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        os.environ["IMAGEFIT_CACHE"] = args.cache or str(tmp / "cache")
        server, uri = start_server(tmp)
        load_before = os.getloadavg()[0]
        try:
            one_run(tmp, "tensorboard+mlflow", "warm-up", uri, server.pid)  # feature cache, MLflow schema, file cache: not timed
            for i in range(args.rounds):
                for v in VARIANTS:
                    runs[v].append(one_run(tmp, v, f"{v}-{i}", uri, server.pid))
                    print(v, json.dumps({k: round(x, 3) for k, x in runs[v][-1].items()}), flush=True)
        finally:
            stop_server(server)
        load_after = os.getloadavg()[0]
    rows = table(runs)
    body = (
        "`imagefit train` (lite0 `linear`, defaults) on cats_and_dogs_filtered (2000 train + 1000 validation photos), "
        f"warm feature cache, {args.rounds} alternating rounds after an untimed warm-up; each run is a whole `imagefit train` "
        "process, timed from start to exit. `plain` has no run records; `tensorboard+mlflow` logs to a local `mlflow server` "
        "(loopback, SQLite store, proxied artifacts) started by the script. *Inside the loggers*: time the training process "
        "spends in every logger hook and the end-of-run logging (*of which the end*: the end-of-run step alone, TensorBoard's "
        "images and handing the MLflow worker its files; the training does not wait for the uploads); *worker CPU during the "
        "training*: the MLflow worker process's CPU time until the training handed over its end (at nice 19); *direct cost* is "
        "their sum over the plain run's wall time, the figure the machine's load barely moves. *Worker CPU in all* and *uploads "
        "done after exit*: the worker's whole CPU time, and how long after the `imagefit train` process exited MLflow had "
        "every file (the script waits for that between runs, untimed). *Server CPU*: what the local MLflow server (job runner off) spent meanwhile, on the same cores: "
        "a cost of hosting the server beside the training, not of logging to it."
        f" Load average (1 min) {load_before:.1f} before, {load_after:.1f} after, on {os.cpu_count()} cores.\n\n"
        + rows
        + f"\n\n{provenance()}"
    )
    print(rows)
    print(f"load average {load_before:.1f} -> {load_after:.1f}")
    if not args.print_only:
        update_section("tracking", "Run records overhead (CPU)", body)


if __name__ == "__main__":
    main()
