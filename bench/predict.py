"""``imagefit predict`` throughput from JPEG files vs the raw engine (the model alone) on pre-decoded tensors.

Both use the same engine (OpenVINO on CPU by default) and lite0 graph in the same process. The predict figure includes reading,
hashing, decoding, resizing and the head; the raw figure is the engine alone on uint8 batches
already in memory. Writes the "Prediction (CPU)" section of BENCHMARKS.md.
Usage: ``python bench/predict.py [--images 1000]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import DATA, machine, sample_model, update_section  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        import numpy as np

        from imagefit.data.load import load_image

        model = sample_model(Path(tmp))
        files = sorted((DATA / "validation").rglob("*.jpg"))[: args.images]
        model.predict(files[:16])  # builds the engine; those 16 are now cached, so skip them below
        files = files[16:]
        # Feature caching is part of predict; start from a cold cache for the timed files.
        t0 = time.perf_counter()
        preds = model.predict(files)
        t_pred = time.perf_counter() - t0
        assert len(preds) == len(files)

        engine = model.engine
        batch = np.stack([model.preprocess.pixels(load_image(f)) for f in files[:64]])
        engine(batch[:16])
        reps = max(1, len(files) // 64)
        t0 = time.perf_counter()
        for _ in range(reps):
            engine(batch)
        t_raw = time.perf_counter() - t0
    pred_ips = len(files) / t_pred
    raw_ips = reps * 64 / t_raw
    body = (
        "| path | images/s |\n| --- | ---: |\n"
        f"| `Model.predict` on {len(files)} JPEG files (read, hash, decode, resize, {engine.kind} lite0, head) | {pred_ips:.1f} |\n"
        f"| raw {engine.kind} lite0 on pre-decoded uint8 batches of 64 ({engine.batch_size} per run) | {raw_ips:.1f} |\n\n"
        f"predict reaches {100 * pred_ips / raw_ips:.0f}% of the raw model throughput.\n\n"
        f"Machine: {machine()}. Command: `python bench/predict.py {' '.join(sys.argv[1:])}`."
    )
    update_section("predict", "Prediction throughput (CPU)", body)
    print(body)


if __name__ == "__main__":
    main()
