"""What run records cost a CPU training: the same small training without and with TensorBoard (and MLflow).

Trains lite0 ``linear`` on the bundled sample (80 + 24 photos, cold feature cache each time, so
extraction is timed as in a first run) in alternating rounds: plain, + TensorBoard, + TensorBoard and
MLflow (a local SQLite store, no server). The loggers are attached as the run wiring attaches them
(extra callbacks of every phase; ``log_run_end`` after the run folder is written) and their
end-of-run work is inside the timed span. Writes the "Run records overhead" section of BENCHMARKS.md.
Usage: ``python bench/tracking_overhead.py [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import ROOT, provenance, update_section

SAMPLE = ROOT / "src" / "imagefit" / "sample_data"
VARIANTS = ("plain", "tensorboard", "tensorboard+mlflow")
# Seconds spent inside the loggers (all hooks and the end-of-run logging), per variant: a figure the
# machine's load barely moves, unlike the difference of two wall times.
INSIDE: dict[str, list[float]] = {v: [] for v in VARIANTS}


def timed(obj: object, name: str, spent: list[float]) -> None:
    fn = getattr(obj, name)

    def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - t0

    setattr(obj, name, wrapper)


def one_run(tmp: Path, variant: str, i: int) -> float:
    import imagefit
    from imagefit.tracking import log_run_end, run_loggers
    from imagefit.train import session

    os.environ["IMAGEFIT_CACHE"] = str(tmp / f"cache-{variant}-{i}")
    out = tmp / f"run-{variant}-{i}"
    loggers: list = []
    spent = [0.0]
    original = session.RunContext.callbacks

    def callbacks(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if variant != "plain" and not loggers:
            t0 = time.perf_counter()
            loggers.extend(run_loggers(self.out, self.config.to_dict(), mlflow=variant.endswith("mlflow")))
            spent[0] += time.perf_counter() - t0
            for cb in loggers:
                for hook in ("on_train_begin", "on_epoch_end", "on_train_end", "log_run_end"):
                    timed(cb, hook, spent)
        return [*original(self, *args, **kwargs), *loggers]

    session.RunContext.callbacks = callbacks  # type: ignore[method-assign]
    try:
        t0 = time.perf_counter()
        run = imagefit.train(SAMPLE / "train", val=SAMPLE / "val", out=out, progress=False)
        if loggers:
            log_run_end(loggers, run.path, run.metrics)
        total = time.perf_counter() - t0
        if i >= 0:
            INSIDE[variant].append(spent[0] / total)
        return total
    finally:
        session.RunContext.callbacks = original  # type: ignore[method-assign]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp / 'mlflow.db'}"
        os.chdir(tmp)  # MLflow puts a SQLite store's artifacts under ./mlruns
        one_run(tmp, "tensorboard+mlflow", -1)  # warm imports and the MLflow schema: not a training cost
        for i in range(args.rounds):
            for v in VARIANTS:
                times[v].append(one_run(tmp, v, i))
                print(v, f"{times[v][-1]:.2f} s", flush=True)
    base = statistics.median(times["plain"])
    rows = ["| run records | median wall time (s) | all rounds (s) | vs plain | time inside the loggers |", "|---|---|---|---|---|"]
    for v in VARIANTS:
        med = statistics.median(times[v])
        inside = f"{100 * statistics.median(INSIDE[v]):.2f}% of the run" if v != "plain" else "-"
        rows.append(f"| {v} | {med:.2f} | {', '.join(f'{t:.2f}' for t in times[v])} | {100 * (med / base - 1):+.1f}% | {inside} |")
    body = (
        "lite0 `linear` on the bundled sample (80 train + 24 validation photos), cold feature cache each run, "
        f"{args.rounds} alternating rounds; loggers attached as the run wiring attaches them, end-of-run logging timed. "
        "Measured on a busy shared machine (load average ~13 on 2 cores): wall-time differences are its noise; the "
        "time spent inside the loggers' hooks (TensorBoard writer, MLflow client calls, end-of-run images and uploads) "
        "is the direct measure of their cost.\n\n" + "\n".join(rows) + f"\n\n{provenance()}"
    )
    update_section("tracking", "Run records overhead (CPU)", body)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
