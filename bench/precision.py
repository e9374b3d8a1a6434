"""Low-precision features by their effect: accuracy and log loss of fp32 against bf16 and int8 (each head trained on its own features).

For each data set, ``imagefit train`` then ``evaluate`` run once per precision (``IMAGEFIT_PRECISION``),
so the bf16 model's head is fit on bf16 features and scored on bf16 features, as a user's would be.
int8 quantizes the backbone on 200 training photos (a seeded choice, never the scored split) and
trains and scores the same way. cats_and_dogs_filtered: train on train, score validation.
clothing-small: train on train (val for early stopping and calibration), score test. Also reports the
largest per-photo probability difference against the fp32 model (for information: the acceptance
rule is accuracy within 0.2 points and log loss within +0.003 of fp32). Writes the "Feature precision"
section of BENCHMARKS.md unless ``--no-write``.
Usage: ``python bench/precision.py [--limit N] [--precisions fp32 int8] [--no-write]`` (N photos per class
and split, for a quick look).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import DATA, provenance, update_section

CLOTHING = DATA.parent / "clothing-small"
SETS = {"cats_and_dogs_filtered": (DATA, "train", "validation", "validation"), "clothing-small": (CLOTHING, "train", "val", "test")}


def subset(root: Path, split: str, limit: int, into: Path) -> Path:
    """``root/split`` itself, or a folder linking the first ``limit`` photos of each class."""
    if not limit:
        return root / split
    for cls in sorted(p for p in (root / split).iterdir() if p.is_dir()):
        (into / split / cls.name).mkdir(parents=True)
        for photo in sorted(cls.iterdir())[:limit]:
            (into / split / cls.name / photo.name).symlink_to(photo)
    return into / split


@contextlib.contextmanager
def features_in(precision: str, train: Path) -> Iterator[None]:
    """Training computes ``precision`` features; int8 calibrated on a seeded choice of 200 training photos.

    ``train`` has no int8 option yet: its engine gets the calibration photos here. Prediction needs
    nothing more: the run records ``int8-<digest>``, and loading finds that cached graph.
    """
    from imagefit.engines.quantize import calibration_choice

    run_mod = importlib.import_module("imagefit.train.run")  # ``imagefit.train`` is also the API's function

    os.environ["IMAGEFIT_PRECISION"] = precision
    engine = run_mod.Engine
    if precision == "int8":
        photos = calibration_choice(sorted(p for p in train.rglob("*") if p.is_file()), seed=0)
        run_mod.Engine = functools.partial(engine, calibration=photos)  # type: ignore[misc]
    try:
        yield
    finally:
        run_mod.Engine = engine  # type: ignore[misc]
        del os.environ["IMAGEFIT_PRECISION"]  # loading keeps the recorded precision


def measure(name: str, limit: int, tmp: Path, precisions: list[str]) -> list[str]:
    import numpy as np

    import imagefit

    root, train, val, score = SETS[name]
    links = tmp / name / "links"
    folders = {s: subset(root, s, limit, links) for s in dict.fromkeys((train, val, score))}
    results, probs = {}, {}
    for precision in precisions:
        t0 = time.perf_counter()
        with features_in(precision, folders[train]):
            run = imagefit.train(folders[train], val=folders[val], out=tmp / name / precision)
        model = imagefit.load(run.path)
        metrics = model.evaluate(folders[score])
        paths = sorted(p for p in folders[score].rglob("*") if p.is_file())
        probs[precision] = np.array([[r["probabilities"][c] for c in model.classes] for r in model.predict(paths)])
        results[precision] = (
            metrics["accuracy"],
            metrics["log_loss"],
            time.perf_counter() - t0,
            f"{model.engine.kind} {model.engine.precision}",
        )
        print(name, precision, results[precision], flush=True)
    rows = [
        f"| {name} ({score}{f', {limit}/class' if limit else ''}) | {p} ({eng}) | {acc * 100:.2f} | {ll:.4f} | {secs:.1f} |"
        for p, (acc, ll, secs, eng) in results.items()
    ]
    a32, l32, _, _ = results["fp32"]
    for p in precisions[1:]:
        acc, ll, _, _ = results[p]
        diff = float(np.abs(probs["fp32"] - probs[p]).max())
        ok = (a32 - acc) * 100 <= 0.2 and ll - l32 <= 0.003
        rows.append(
            f"| | {p} - fp32 | {(acc - a32) * 100:+.2f} | {ll - l32:+.4f} | max per-photo probability difference {diff:.3f}; "
            f"{'accepted' if ok else 'NOT accepted'} |"
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=0, help="photos per class and split (0: all)")
    ap.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    ap.add_argument("--precisions", nargs="+", default=["fp32", "bf16", "int8"], choices=["fp32", "bf16", "int8"])
    ap.add_argument("--no-write", action="store_true", help="print the section, leave BENCHMARKS.md as it is")
    args = ap.parse_args()
    # fp32 first: every other precision is compared with it.
    precisions = ["fp32", *(p for p in dict.fromkeys(args.precisions) if p != "fp32")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["IMAGEFIT_CACHE"] = str(Path(tmp) / "cache")
        for name in args.sets:
            rows += measure(name, args.limit, Path(tmp), precisions)
    body = (
        "| data (scored split) | features | accuracy % | log loss | train + evaluate + predict s |\n| --- | --- | ---: | ---: | ---: |\n"
        + "\n".join(rows)
        + "\n\nEach precision trains its own head on its own features (cold cache) and is scored on the same precision's "
        "features. Acceptance: accuracy within 0.2 points and log loss within +0.003 of fp32.\n\n" + provenance()
    )
    if not args.no_write:
        update_section("precision", "Feature precision (fp32 against bf16 and int8)", body)
    print(body)


if __name__ == "__main__":
    main()
