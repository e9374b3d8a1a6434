"""What reaches issue 18's accuracy targets: backbones, flip views, TTA, ensembles, input size, crop.

Usage: python bench/accuracy_study.py [--sets clothing-small cats_and_dogs_filtered] [--sources ...]

Every candidate is a linear head on cached pooled features (the library's own
:class:`~imagefit.search.sources.FeatureSource`, views ``orig`` and ``flip``;
reruns read the feature cache), ``C`` chosen on validation as the search does
(``fit_linear(val=...)``; ``cv`` rows: 5-fold CV on train), then a temperature
fit on validation as the saved run does (applied per view, views' probabilities
averaged, as ``Model.head_probs``). Choices look at validation only; the test
split (clothing-small) is reported, never used to choose. cats_and_dogs_filtered
has no test split: its validation figures are the reported ones (and, as in the
issue, the same photos choose ``C`` and the temperature).

Columns: val/test accuracy and log loss after temperature (``ll``), the extraction
seconds of the source (0 when cached; the machine is shared, so these are not
benchmark figures).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT
from imagefit.calibrate import log_loss
from imagefit.data.discover import discover
from imagefit.data.load import SkipLog
from imagefit.data.transforms import Preprocess
from imagefit.search import FeatureSource, fit_linear
from imagefit.search.linear import LinearFit
from imagefit.search.sources import SetFeatures, SourceKey

SHARED = ROOT.parent / "shared" / "data"
VIEWS = ("orig", "flip")
# name -> (backbone, input size or None, crop_pct or None): cheapest first, so a partial run still says most.
SOURCES = {
    "lite0": ("lite0", None, None),
    "lite2": ("lite2", None, None),
    "lite1": ("lite1", None, None),
    "lite0-crop1": ("lite0", None, 1.0),
    "lite2@300": ("lite2", 300, None),
}


@dataclass
class Feats:
    tr: SetFeatures
    va: SetFeatures
    te: SetFeatures | None
    seconds: float


def load_source(name: str, found) -> Feats:  # type: ignore[no-untyped-def]
    backbone, size, crop = SOURCES[name]
    src = FeatureSource(SourceKey(backbone, size))
    if crop is not None:
        p = src.pre
        src.pre = Preprocess(p.input_size, p.mean, p.std, p.interpolation, crop)
    sk = SkipLog()
    tr = src.features(found.train, VIEWS, sk)
    va = src.features(found.val, VIEWS, sk)
    te = src.features(found.test, VIEWS, sk) if found.test is not None else None
    return Feats(tr, va, te, src.seconds)


def view_probs(fit: LinearFit, x: np.ndarray, t: float, tta: bool) -> np.ndarray:
    """Probabilities as a saved model gives them: temperature per view, views averaged."""
    x = x if tta else x[:, :1]
    n, v, f = x.shape
    z = fit.logits(x.reshape(n * v, f)) / t
    if z.shape[1] == 1:
        p1 = 1.0 / (1.0 + np.exp(-z[:, 0]))
        p = np.stack([1 - p1, p1], 1)
    else:
        z = z - z.max(1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(1, keepdims=True)
    return p.reshape(n, v, -1).mean(1)


def temperature(fit: LinearFit, x: np.ndarray, y: np.ndarray, tta: bool) -> float:
    grid = np.exp(np.linspace(math.log(0.3), math.log(3.0), 61))
    lls = [log_loss(view_probs(fit, x, float(t), tta), y) for t in grid]
    return float(grid[int(np.argmin(lls))])


def row(name: str, pv: np.ndarray, yv: np.ndarray, pt: np.ndarray | None, yt: np.ndarray | None, extra: str) -> str:
    acc_v, ll_v = float((pv.argmax(1) == yv).mean()), log_loss(pv, yv)
    if pt is not None and yt is not None:
        acc_t, ll_t = f"{float((pt.argmax(1) == yt).mean()):.4f}", f"{log_loss(pt, yt):.4f}"
    else:
        acc_t = ll_t = "-"
    return f"| {name} | {acc_v:.4f} | {ll_v:.4f} | {acc_t} | {ll_t} | {extra} |"


def heads(
    label: str,
    xtr: np.ndarray,
    ytr: np.ndarray,
    xva: np.ndarray,
    yva: np.ndarray,
    xte,
    yte,
    n_classes: int,
    secs: float,
    cv: bool,
    train_views=("orig", "orig+flip"),
):  # type: ignore[no-untyped-def]
    """Rows for train views orig / orig+flip x prediction with/without TTA; returns (rows, best-by-val probs)."""
    out, probs = [], {}
    for tv in train_views:
        v = 1 if tv == "orig" else 2
        t0 = time.perf_counter()
        if cv:
            fit = fit_linear(xtr[:, :v], ytr, n_classes)
        else:
            fit = fit_linear(xtr[:, :v], ytr, n_classes, val=(xva[:, :v], yva))
        fit_s = time.perf_counter() - t0
        for tta in (False, True):
            t = temperature(fit, xva, yva, tta)
            pv = view_probs(fit, xva, t, tta)
            pt = view_probs(fit, xte, t, tta) if xte is not None else None
            name = f"{label} {tv}{' tta' if tta else ''}{' cv' if cv else ''}"
            out.append(row(name, pv, yva, pt, yte, f"C={fit.c:g} T={t:.2f} extract {secs:.0f}s fit {fit_s:.1f}s"))
            probs[(tv, tta)] = (log_loss(pv, yva), pv, pt)
            print(out[-1], flush=True)
    return out, probs


def study(set_name: str, sources: list[str], cv_for: set[str], both: set[str]) -> None:
    found = discover(SHARED / set_name)
    n_classes = len(found.train.classes)
    print(f"\n## {set_name}: train {len(found.train)}, val {len(found.val)}, test {len(found.test) if found.test else 0}", flush=True)
    print("| candidate | val acc | val ll | test acc | test ll | notes |\n|---|---|---|---|---|---|", flush=True)
    got: dict[str, Feats] = {}
    best: dict[str, tuple[float, np.ndarray, np.ndarray | None]] = {}
    for name in sources:
        f = load_source(name, found)
        got[name] = f
        yte = f.te.labels if f.te is not None else None
        xte = f.te.values if f.te is not None else None
        tvs = ("orig", "orig+flip") if name in both else ("orig+flip",)
        _, probs = heads(name, f.tr.values, f.tr.labels, f.va.values, f.va.labels, xte, yte, n_classes, f.seconds, False, tvs)
        best[name] = min(probs.values(), key=lambda p: p[0])
        if name in cv_for:
            heads(name, f.tr.values, f.tr.labels, f.va.values, f.va.labels, xte, yte, n_classes, 0.0, True)
    members = [n for n in ("lite0", "lite1", "lite2") if n in got]
    if len(members) > 1:
        first = got[members[0]]
        same = all(
            np.array_equal(got[m].tr.indices, first.tr.indices) and np.array_equal(got[m].va.indices, first.va.indices) for m in members
        )
        if same:
            cat = lambda part: np.concatenate([getattr(got[m], part).values for m in members], -1)  # noqa: E731
            xte = cat("te") if first.te is not None else None
            yte = first.te.labels if first.te is not None else None
            heads(
                "+".join(members) + " concat",
                cat("tr"),
                first.tr.labels,
                cat("va"),
                first.va.labels,
                xte,
                yte,
                n_classes,
                0.0,
                False,
                ("orig+flip",),
            )
            pv = np.mean([best[m][1] for m in members], 0)
            pt = np.mean([best[m][2] for m in members], 0) if first.te is not None else None
            print(row("+".join(members) + " avg (each member's best by val)", pv, first.va.labels, pt, yte, ""), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", nargs="+", default=["clothing-small", "cats_and_dogs_filtered"])
    ap.add_argument("--sources", nargs="+", default=list(SOURCES), choices=list(SOURCES))
    ap.add_argument("--cv", nargs="*", default=[], help="sources also scored with C chosen by 5-fold CV on train (slow)")
    ap.add_argument("--orig-heads", nargs="*", default=["lite0", "lite2"], help="sources also fitted on the photos alone (no flips)")
    args = ap.parse_args()
    for s in args.sets:
        study(s, args.sources, set(args.cv), set(args.orig_heads))


if __name__ == "__main__":
    main()
