"""``imagefit inspect``: what is in a data folder before training on it.

Nothing here imports torch unless an augmentation preview is asked for: a look
at a folder must start in well under a second.
"""

from __future__ import annotations

import os
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .data.discover import ImageSet, discover
from .data.load import SkipLog, content_digest, probe, read_bytes
from .duplicates import NEAR_THRESHOLD, DuplicateReport, find_duplicates
from .errors import BadImageError


def _probe(path: Path) -> tuple[int, int] | str:
    try:
        return probe(path)
    except BadImageError as exc:
        return str(exc)


def _threads() -> int:
    # One per core, at least two: data.loader.default_workers' rule, without importing torch with it.
    return max(2, os.cpu_count() or 2)


def inspect_data(data: str | Path, *, labels_from_filename: bool = False) -> dict[str, Any]:
    """Class counts, imbalance ratio, unreadable files and image size range of every split.

    Every file is fully decoded, so the unreadable list is exactly what training would skip.
    """
    found = discover(data, labels_from_filename=labels_from_filename)
    report: dict[str, Any] = {"data": str(data), "layout": found.layout, "classes": found.train.classes, "splits": {}}
    for name, s in (("train", found.train), ("val", found.val), ("test", found.test)):
        if s is not None:
            report["splits"][name] = _inspect_set(s)
    return report


def _inspect_set(s: ImageSet) -> dict[str, Any]:
    with ThreadPoolExecutor(_threads()) as pool:
        results = list(pool.map(_probe, s.paths))
    skipped = SkipLog()
    sizes = []
    for p, r in zip(s.paths, results):
        if isinstance(r, str):
            skipped.add(p, r)
        else:
            sizes.append(r)
    counts = s.counts() if s.labeled else {}
    nonzero = [c for c in counts.values() if c]
    out: dict[str, Any] = {
        "n_files": len(s),
        "n_readable": len(sizes),
        "counts": counts,
        "imbalance_ratio": (max(nonzero) / min(nonzero)) if nonzero else None,
        "unreadable": skipped.as_list(),
    }
    if sizes:
        ws = [w for w, _ in sizes]
        hs = [h for _, h in sizes]
        out["size"] = {"min": [min(ws), min(hs)], "max": [max(ws), max(hs)], "median": [sorted(ws)[len(ws) // 2], sorted(hs)[len(hs) // 2]]}
    return out


def _digest(path: Path) -> str | None:
    try:
        return content_digest(read_bytes(path))
    except BadImageError:
        return None  # listed as unreadable by inspect_data; never paired


def data_duplicates(
    data: str | Path,
    *,
    near: bool = True,
    model: str = "lite0",
    threshold: float = NEAR_THRESHOLD,
    labels_from_filename: bool = False,
    progress: bool = False,
) -> DuplicateReport:
    """Exact and (with ``near``) near-duplicate photos within and across the train/val/test splits of ``data``.

    Near-duplicates need ``model``'s pretrained features of each photo and its
    mirror image: they come from the feature cache (the same entries training
    uses), so a set that was trained on is searched without running the backbone.
    With ``near=False`` no model is loaded (and torch is not imported).
    """
    found = discover(data, labels_from_filename=labels_from_filename)
    paths: list[Path] = []
    splits: list[str] = []
    for name, s in (("train", found.train), ("val", found.val), ("test", found.test)):
        if s is not None:
            paths += [Path(p) for p in s.paths]
            splits += [name] * len(s)
    with ThreadPoolExecutor(_threads()) as pool:
        digests = list(pool.map(_digest, paths))
    if not near:
        return find_duplicates(paths, splits, digests, threshold=threshold)
    idx, values = _pretrained_features(paths, model, progress)
    keep = [int(i) for i in idx]
    return find_duplicates([paths[i] for i in keep], [splits[i] for i in keep], [digests[i] for i in keep], values, threshold=threshold)


def _pretrained_features(paths: list[Path], model: str, progress: bool) -> tuple[Any, Any]:
    """``(indices, [n, 2, F])``: cached (or computed) features of ``model``'s pretrained weights, original and mirror views."""
    from .engine import Engine, model_key
    from .features import FeatureCache, extract
    from .models.registry import create_backbone, state_digest
    from .ui import UI

    backbone, spec = create_backbone(model)
    digest = state_digest(backbone)
    engine = Engine(backbone, spec.preprocess, model_key(spec.name, digest))
    cache = FeatureCache.for_backbone(digest, spec.preprocess)
    with UI(progress).task("features", len(paths)) as advance:
        feats = extract(paths, engine, spec.preprocess, SkipLog(), cache=cache, views=("orig", "flip"), progress=advance)
    return feats.indices, feats.values


def write_contact_sheet(report: DuplicateReport, path: str | Path, n: int = 24) -> Path:
    """A PNG of the ``n`` most similar pairs, side by side (one pair a row), captioned with split, name and cosine."""
    from .paths import atomic_write_bytes
    from .report.plots import image_grid

    items = []
    for p in report.pairs[:n]:
        how = "exact copy" if p.exact else f"cosine {p.similarity:.3f}"
        items.append({"path": p.a, "caption": f"{p.split_a}: {p.a.name}\n{how}"})
        items.append({"path": p.b, "caption": f"{p.split_b}: {p.b.name}\n{how}"})
    title = f"{min(n, len(report.pairs))} of {len(report.pairs)} duplicate pairs (near: cosine >= {report.threshold})"
    return atomic_write_bytes(path, image_grid(items, title=title, cols=2))


def sample_photos(data: str | Path, *, per_class: int = 6, labels_from_filename: bool = False, seed: int = 0) -> dict[str, list[Path]]:
    """A few photos per class of the training split; the same ones every time (seeded), so reports compare."""
    train = discover(data, labels_from_filename=labels_from_filename).train
    rng = random.Random(seed)
    samples = {}
    for k, c in enumerate(train.classes):
        ps = [p for p, y in zip(train.paths, train.labels) if y == k]
        samples[c] = sorted(rng.sample(ps, min(per_class, len(ps))))
    return samples


def write_inspect_report(
    data: str | Path, report: dict[str, Any], path: str | Path, *, labels_from_filename: bool = False, per_class: int = 6
) -> Path:
    """Write inspect's HTML report (:func:`inspect_data`'s ``report`` and a grid of sample photos per class)."""
    from .report import write_inspect_report as write

    return write(Path(path), report, sample_photos(data, per_class=per_class, labels_from_filename=labels_from_filename))


def augment_preview(
    data: str | Path,
    path: str | Path,
    augment: str = "heavy",
    *,
    model: str = "lite0",
    photos: int = 4,
    variants: int = 5,
    labels_from_filename: bool = False,
    seed: int = 0,
) -> Path:
    """Write a PNG grid: each row one training photo, first as evaluated, then ``variants`` augmented draws.

    Uses the training transform itself (:meth:`~imagefit.data.transforms.Preprocess.train_transform`)
    with ``model``'s preprocessing, so the preview shows exactly what training sees.
    """
    from .config import AUGMENTS
    from .errors import invalid

    if augment not in AUGMENTS:
        raise invalid("augment", augment, AUGMENTS)
    import numpy as np
    import torch
    from PIL import Image

    from .data.load import load_image
    from .models.registry import get_spec
    from .paths import atomic_write_bytes

    pre = get_spec(model).preprocess
    train_tf, eval_tf = pre.train_transform(augment), pre.train_transform("none")
    samples = sample_photos(data, per_class=max(1, photos // 2), labels_from_filename=labels_from_filename, seed=seed)
    chosen = [p for ps in samples.values() for p in ps][:photos]
    torch.manual_seed(seed)
    mean, std = torch.tensor(pre.mean).view(3, 1, 1), torch.tensor(pre.std).view(3, 1, 1)

    def pixels(x: torch.Tensor) -> np.ndarray:
        return (x * std + mean).clamp(0, 1).mul(255).byte().permute(1, 2, 0).numpy()

    rows = []
    for p in chosen:
        try:
            img = load_image(p)
        except BadImageError:
            continue  # inspect's main listing names unreadable files; the preview just shows readable ones
        rows.append([pixels(eval_tf(img))] + [pixels(train_tf(img)) for _ in range(variants)])
    return atomic_write_bytes(path, _tile(rows, pre.input_size, Image))


def _tile(rows: list[list[Any]], size: int, Image: Any, gap: int = 4) -> bytes:
    """Arrays of ``size`` x ``size`` pixels laid out in rows, as PNG bytes."""
    import io

    cols = max((len(r) for r in rows), default=1)
    sheet = Image.new("RGB", (cols * (size + gap) + gap, max(1, len(rows)) * (size + gap) + gap), "white")
    for i, row in enumerate(rows):
        for j, arr in enumerate(row):
            sheet.paste(Image.fromarray(arr), (gap + j * (size + gap), gap + i * (size + gap)))
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    return buf.getvalue()
