"""Low-precision features by their effect: accuracy and log loss of fp32 against bf16 (each head trained on its own features).

For each data set, ``imagefit train`` then ``evaluate`` run once per precision (``IMAGEFIT_PRECISION``),
so the bf16 model's head is fit on bf16 features and scored on bf16 features, as a user's would be.
cats_and_dogs_filtered: train on train, score validation. clothing-small: train on train (val for
early stopping and calibration), score test. Also reports the largest per-photo probability difference
between the two models (for information: the acceptance rule is accuracy within 0.2 points and log
loss within +0.003 of fp32). Writes the "Feature precision" section of BENCHMARKS.md.
Usage: ``python bench/precision.py [--limit N]`` (N photos per class and split, for a quick look).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
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


def measure(name: str, limit: int, tmp: Path) -> list[str]:
    import numpy as np

    import imagefit

    root, train, val, score = SETS[name]
    links = tmp / name / "links"
    folders = {s: subset(root, s, limit, links) for s in dict.fromkeys((train, val, score))}
    results, probs = {}, {}
    for precision in ("fp32", "bf16"):
        os.environ["IMAGEFIT_PRECISION"] = precision
        t0 = time.perf_counter()
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
    diff = float(np.abs(probs["fp32"] - probs["bf16"]).max())
    (a32, l32, _, _), (a16, l16, _, _) = results["fp32"], results["bf16"]
    ok = (a32 - a16) * 100 <= 0.2 and l16 - l32 <= 0.003
    rows = [
        f"| {name} ({score}{f', {limit}/class' if limit else ''}) | {p} ({eng}) | {acc * 100:.2f} | {ll:.4f} | {secs:.1f} |"
        for p, (acc, ll, secs, eng) in results.items()
    ]
    rows.append(
        f"| | bf16 - fp32 | {(a16 - a32) * 100:+.2f} | {l16 - l32:+.4f} | max per-photo probability difference {diff:.3f}; "
        f"{'accepted' if ok else 'NOT accepted'} |"
    )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=0, help="photos per class and split (0: all)")
    ap.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["IMAGEFIT_CACHE"] = str(Path(tmp) / "cache")
        for name in args.sets:
            rows += measure(name, args.limit, Path(tmp))
    body = (
        "| data (scored split) | features | accuracy % | log loss | train + evaluate + predict s |\n| --- | --- | ---: | ---: | ---: |\n"
        + "\n".join(rows)
        + "\n\nEach precision trains its own head on its own features (cold cache) and is scored on the same precision's "
        "features. Acceptance: accuracy within 0.2 points and log loss within +0.003 of fp32.\n\n" + provenance()
    )
    update_section("precision", "Feature precision (fp32 against bf16)", body)
    print(body)


if __name__ == "__main__":
    main()
