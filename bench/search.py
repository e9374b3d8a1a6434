"""Default head vs the CV-chosen linear head vs ``search`` with time budgets; writes a BENCHMARKS.md section.

Usage: python bench/search.py [--budgets 2m 5m 10m] [--sets clothing-small cats_and_dogs_filtered] [--cold]

Choices are made on validation only; clothing-small is reported on its test split, cats_and_dogs_filtered
(no test split) on validation. ``--cold`` runs every configuration with an empty feature cache
(what a first run costs); otherwise the shared cache makes repeated extraction free.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, provenance, update_section
from imagefit.calibrate import log_loss
from imagefit.data.discover import discover
from imagefit.data.load import SkipLog
from imagefit.search import FeatureSource, fit_linear
from imagefit.search.sources import SourceKey

SHARED = ROOT.parent / "shared" / "data"


def _report_set(found):  # type: ignore[no-untyped-def]
    return (found.test, "test") if found.test is not None else (found.val, "val")


def _metrics(probs: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    return float((probs.argmax(1) == y).mean()), log_loss(probs, y)


def default_run(data: Path, tmp: Path, **options: object) -> tuple[float, float, float, str]:
    """``imagefit.train(data, **options)``; the saved model scored as ``evaluate`` scores it, and the backbone it kept."""
    import imagefit

    t0 = time.perf_counter()
    tag = "-".join(f"{k}-{v}" for k, v in options.items()) or "default"
    run = imagefit.train(data, out=tmp / f"{tag}-{data.name}", **options)
    seconds = time.perf_counter() - t0
    found = discover(data)
    rep, _ = _report_set(found)
    model = imagefit.load(run.path)
    m = model.evaluate(rep)
    return m["accuracy"], m["log_loss"], seconds, model.record.backbone.name


def cv_head(data: Path) -> tuple[float, float, float]:
    found = discover(data)
    rep, _ = _report_set(found)
    t0 = time.perf_counter()
    src = FeatureSource(SourceKey("lite0"))
    tr = src.features(found.train, ("orig",), SkipLog())
    va = src.features(found.val, ("orig",), SkipLog())
    fit = fit_linear(tr.values, tr.labels, len(found.train.classes), val=(va.values, va.labels))
    seconds = time.perf_counter() - t0
    te = src.features(rep, ("orig",), SkipLog())
    acc, ll = _metrics(fit.probs(te.values), te.labels)
    return acc, ll, seconds


def budget_run(data: Path, budget: str, seed: int, tmp: Path) -> tuple[float, float, float, str, float]:
    """``imagefit.train(data, budget=...)`` as a user runs it; the saved model scored as ``evaluate`` scores it."""
    import imagefit

    t0 = time.perf_counter()
    run = imagefit.train(data, out=tmp / f"budget-{budget}-{data.name}", budget=budget, seed=seed)
    seconds = time.perf_counter() - t0
    rep, _ = _report_set(discover(data))
    model = imagefit.load(run.path)
    record = model.record
    # The winner's flip averaging is recorded with it (a typed field once the record has one).
    tta = bool(getattr(record, "tta", None) or record.extra.get("tta", False))
    m = model.evaluate(rep, tta=tta)
    board = record.extra["search"]
    return m["accuracy"], m["log_loss"], seconds, str(board["best"]), float(board["overrun"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budgets", nargs="*", default=["2m", "5m", "10m"])
    ap.add_argument("--sets", nargs="*", default=["clothing-small", "cats_and_dogs_filtered"])
    ap.add_argument("--cold", action="store_true")
    ap.add_argument("--finetune", nargs="*", default=[], help="sets on which to also time --strategy finetune (minutes on a CPU)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    load = os.getloadavg()[0]
    rows = [
        "| data (reported on) | configuration | accuracy | log loss | seconds | chosen | overrun |",
        "|---|---|---:|---:|---:|---|---:|",
    ]
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        for name in args.sets:
            data = SHARED / name
            _, split = _report_set(discover(data))
            label = f"{name} ({split})"
            configs: list[tuple[str, object]] = [
                ("default (--model auto)", {}),
                ("--model lite0 (Adam head)", {"model": "lite0"}),
                ("lite0 + CV-chosen linear head", "cv"),
            ]
            if name in args.finetune:
                configs.append(("--strategy finetune (defaults, lite0)", {"strategy": "finetune"}))
            configs += [(f"--budget {b}", b) for b in args.budgets]
            for i, (title, what) in enumerate(configs):
                if args.cold:
                    os.environ["IMAGEFIT_CACHE"] = str(tmp / f"cache-{name}-{i}")
                if isinstance(what, dict):
                    acc, ll, s, kept = default_run(data, tmp, **what)
                    rows.append(f"| {label} | {title} | {acc:.4f} | {ll:.4f} | {s:.0f} | {kept} | |")
                elif what == "cv":
                    acc, ll, s = cv_head(data)
                    rows.append(f"| {label} | {title} | {acc:.4f} | {ll:.4f} | {s:.0f} | | |")
                else:
                    acc, ll, s, chosen, over = budget_run(data, str(what), args.seed, tmp)
                    rows.append(f"| {label} | {title} | {acc:.4f} | {ll:.4f} | {s:.0f} | {chosen} | {over:.1%} |")
                print(rows[-1], flush=True)
    body = (
        f"{provenance()} Feature cache: {'cold (empty) for every row' if args.cold else 'shared (warm after the first use)'}; "
        f"load average at start {load:.1f}.\n\n"
        "Choices by validation only (k-fold CV for sets under 1,000 photos); accuracy and log loss on the split named. "
        "*chosen*: the saved model's backbone (default, finetune) or the search's winner (--budget). The default is "
        "`--model auto` (lite0, stepping up to lite0+lite1+lite2 when lite0's head gets under 98% of validation photos right); "
        "`--budget` keeps the candidate cheapest to predict with within one standard error of the lowest validation log loss.\n\n"
        + "\n".join(rows)
    )
    # A cold run is a section of its own, beside the warm one (the figures answer different questions).
    if args.cold:
        update_section("search-cold", "Budget search (CPU, cold feature cache)", body)
    else:
        update_section("search", "Budget search (CPU)", body)


if __name__ == "__main__":
    main()
