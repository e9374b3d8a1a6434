"""Peak resident memory of a feature-extraction pass over many photos (streaming check).

Links the 3,000 cats_and_dogs_filtered photos ``--copies`` times (default 9: 27,000 paths) into a
temporary folder and extracts lite0 features of all of them without the cache (so every photo is
decoded and run), then reports images/s and the process's peak RSS. Writes the "Memory" section
of BENCHMARKS.md. Usage: ``python bench/memory.py [--copies 9]``.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import DATA, bare_fp32_rate, provenance, update_section


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--copies", type=int, default=9)
    args = ap.parse_args()
    photos = sorted(DATA.rglob("*.jpg"))
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["IMAGEFIT_CACHE"] = str(Path(tmp) / "cache")
        from imagefit.data.load import SkipLog
        from imagefit.engine import Engine, model_key
        from imagefit.features import extract
        from imagefit.models import create_backbone
        from imagefit.models.registry import state_digest

        paths = []
        for c in range(args.copies):
            for i, p in enumerate(photos):
                link = Path(tmp) / f"c{c}" / f"{i}.jpg"
                link.parent.mkdir(exist_ok=True)
                link.symlink_to(p)
                paths.append(link)
        backbone, spec = create_backbone("lite0")
        engine = Engine(backbone, spec.preprocess, model_key("lite0", state_digest(backbone)))
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        t0 = time.perf_counter()
        feats = extract(paths, engine, spec.preprocess, SkipLog(), cache=None)
        dt = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    bare = bare_fp32_rate()
    body = (
        f"Feature extraction of {len(paths):,} photo paths (cats_and_dogs_filtered linked {args.copies} times, no cache): "
        f"{len(feats.indices):,} feature vectors in {dt:.0f} s ({len(paths) / dt:.0f} images/s, "
        f"{len(paths) / dt / bare:.2f}x the bare fp32 ONNX Runtime rate of {bare:.0f} images/s, {engine.kind} {engine.precision}); "
        f"peak resident memory {peak:.0f} MiB (model loaded: {before:.0f} MiB). "
        "Target (issue 19): <= 1.5 GB. Photos are streamed: at most 4 per core are in flight at any time (a few batches with engines that take batches); only the 1280-float feature vectors are kept.\n\n"
        f"{provenance()}"
    )
    update_section("memory", "Memory (CPU)", body)
    print(body)


if __name__ == "__main__":
    main()
