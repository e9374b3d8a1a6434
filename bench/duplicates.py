"""Duplicates: generated copies found, near-duplicate pairs of cats_and_dogs_filtered, and the search's speed.

1. Copies: 200 of the 1,000 cats_and_dogs_filtered validation photos get 4 generated
   copies each (half-size resize, JPEG quality 40, 6% cropped off each side,
   mirrored), written to a temporary folder (never into the shared data). A data
   folder with the 1,000 originals as ``train`` and the 800 copies as ``val`` goes
   through ``imagefit.inspect.data_duplicates`` (lite0, cosine >= NEAR_THRESHOLD):
   share of copies paired with their original, and pairs between distinct photos.
2. cats_and_dogs_filtered itself (train + validation, 3,000 photos): the near-duplicate
   pairs, with a contact sheet (bench/duplicates_cats_dogs.png) to check by eye.
3. Speed: the whole ``data_duplicates`` call on the already-extracted set (model
   load, 3,000 photos' cached features read, search), the search alone
   (``find_duplicates`` on features in memory), and ``near_pairs`` on synthetic
   N x 1280 features.

    python bench/duplicates.py [--sizes 10000,30000,100000] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA, ROOT, provenance, update_section

SHEET = ROOT / "bench" / "duplicates_cats_dogs.png"


def _copies(tmp: Path, n: int = 200) -> dict[Path, Path]:
    """train/ = links to the 1,000 validation photos, val/ = 4 altered copies of ``n`` of them; copy -> original."""
    from PIL import Image, ImageOps

    made: dict[Path, Path] = {}
    photos = sorted((DATA / "validation").rglob("*.jpg"))
    for p in photos:
        (tmp / "train" / p.parent.name).mkdir(parents=True, exist_ok=True)
        os.symlink(p, tmp / "train" / p.parent.name / p.name)
    for p in random.Random(0).sample(photos, n):
        out = tmp / "val" / p.parent.name
        out.mkdir(parents=True, exist_ok=True)
        with Image.open(p) as im:
            im = im.convert("RGB")
            w, h = im.size
            dx, dy = round(0.06 * w), round(0.06 * h)
            variants = {
                "resized": im.resize((w // 2, h // 2), Image.Resampling.BICUBIC),
                "q40": im,
                "cropped": im.crop((dx, dy, w - dx, h - dy)),
                "mirrored": ImageOps.mirror(im),
            }
            for kind, v in variants.items():
                dest = out / f"{p.stem}-{kind}.jpg"
                v.save(dest, quality=40 if kind == "q40" else 90)
                made[dest] = tmp / "train" / p.parent.name / p.name
    return made


def copies_found(tmp: Path) -> list[str]:
    from imagefit.inspect import data_duplicates

    made = _copies(tmp)
    rep = data_duplicates(tmp, near=True)
    found: dict[Path, bool] = dict.fromkeys(made, False)
    wrong = 0
    for p in rep.pairs:
        if p.split_a == "train" and p.split_b == "val" and made.get(p.b) == p.a:
            found[p.b] = True
        elif p.split_a == "val" and p.split_b == "val" and made.get(p.a) == made.get(p.b):
            pass  # two copies of one photo
        else:
            wrong += 1
    lines = ["| copy | found |", "|---|---|"]
    for kind in ("resized", "q40", "cropped", "mirrored"):
        hits = [v for k, v in found.items() if k.stem.endswith(kind)]
        lines.append(f"| {kind} | {np.mean(hits):.1%} ({sum(hits)}/{len(hits)}) |")
    lines.append(f"| all | {np.mean(list(found.values())):.1%} ({sum(found.values())}/{len(found)}) |")
    lines += [
        "",
        f"Pairs between distinct photos (the 1,000 originals among themselves, or a copy with another photo): {wrong}.",
    ]
    return lines


def kaggle_pairs() -> tuple[list[str], float, float, int]:
    from imagefit.data.discover import discover
    from imagefit.duplicates import find_duplicates
    from imagefit.inspect import _digest, _pretrained_features, data_duplicates, write_contact_sheet

    rep = data_duplicates(DATA, near=True)  # extracts what the cache lacks
    t0 = time.perf_counter()
    rep = data_duplicates(DATA, near=True)
    whole = time.perf_counter() - t0
    found = discover(DATA)
    paths = [Path(p) for s in (found.train, found.val) if s is not None for p in s.paths]
    splits = ["train"] * len(found.train) + ["val"] * (len(paths) - len(found.train))
    digests = [_digest(p) for p in paths]
    idx, values = _pretrained_features(paths, "lite0", False)
    t0 = time.perf_counter()
    find_duplicates([paths[i] for i in idx], [splits[i] for i in idx], [digests[i] for i in idx], values)
    search = time.perf_counter() - t0
    write_contact_sheet(rep, SHEET, n=40)
    lines = ["| splits | exact | near |", "|---|---|---|"]
    for k, v in rep.counts().items():
        lines.append(f"| {k} | {v['exact']} | {v['near']} |")
    lines += ["", "| a | b | cosine |", "|---|---|---|"]
    for p in rep.pairs[:15]:
        lines.append(f"| {p.split_a}/{p.a.parent.name}/{p.a.name} | {p.split_b}/{p.b.parent.name}/{p.b.name} | {p.similarity:.3f} |")
    return lines, whole, search, len(paths)


def synthetic(sizes: list[int]) -> list[str]:
    from imagefit.duplicates import near_pairs
    from imagefit.ood import normalize

    lines = ["| photos | search seconds | pairs found (10 planted) |", "|---|---|---|"]
    rng = np.random.default_rng(0)
    for n in sizes:
        x = rng.standard_normal((n, 1280), dtype=np.float32)
        x[n - 10 :] = x[:10] + 0.3 * rng.standard_normal((10, 1280), dtype=np.float32)  # planted near copies
        unit = normalize(x)
        t0 = time.perf_counter()
        pairs = near_pairs(unit, 0.88)
        lines.append(f"| {n:,} | {time.perf_counter() - t0:.1f} | {len(pairs)} |")
        print(lines[-1], flush=True)
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,30000,100000")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        copy_lines = copies_found(Path(tmp))
    print("\n".join(copy_lines), flush=True)
    kag_lines, whole, search, n = kaggle_pairs()
    print("\n".join(kag_lines), flush=True)
    syn_lines = synthetic([int(s) for s in args.sizes.split(",") if s])
    from imagefit.duplicates import NEAR_THRESHOLD

    body = [
        provenance(),
        "",
        f"Near-duplicates: cosine >= {NEAR_THRESHOLD} of lite0's pretrained features, mean of the photo and its mirror image.",
        "",
        "Generated copies of 200 cats_and_dogs_filtered validation photos (half-size resize, JPEG quality 40, 6% cropped off "
        "each side, mirrored), searched among all 1,000 validation photos with `imagefit.inspect.data_duplicates`:",
        "",
        *copy_lines,
        "",
        f"cats_and_dogs_filtered itself ({n:,} photos, train + validation): pairs per split pair, and the most similar "
        f"pairs; contact sheet: `bench/{SHEET.name}`.",
        "",
        *kag_lines,
        "",
        f"Speed on the already-extracted set ({n:,} photos): whole `data_duplicates` call (model built, digests and cached "
        f"features of every photo read, search) {whole:.1f} s; the search alone (`find_duplicates` on features in memory) "
        f"{search:.2f} s.",
        "",
        "Synthetic unit features, N x 1280 (`near_pairs`: blocked exact search, memory of one 2,048-row block):",
        "",
        *syn_lines,
    ]
    if not args.no_write:
        update_section("duplicates", "Duplicates and near-duplicates", "\n".join(body))
    print("\n".join(body))


if __name__ == "__main__":
    main()
