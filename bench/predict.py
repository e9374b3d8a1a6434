"""``imagefit predict`` throughput from JPEG files vs the raw engine (the model alone) on pre-decoded tensors.

Both use the same engine (this CPU's default: OpenVINO bf16 with AMX, else ONNX Runtime fp32) and lite0
graph in the same process; the bare fp32 ONNX Runtime graph (one single-thread session per core, batch 1),
the yardstick of issue 19's targets, is measured in the same run. The
predict figure includes reading, hashing, decoding, resizing, the feature-cache writes and the head;
the raw figure is the engine alone on uint8 images already in memory, run the way the engine runs
them fastest (one single-threaded run per core, one image each). The two take turns for several
rounds, each predict round on a cold feature cache, so that background load on a shared machine hits
both alike; the figures are totals over the rounds. The photos are read once before timing, so the
operating system's file cache holds them in every round. Writes the "Prediction (CPU)" section of
BENCHMARKS.md. Usage: ``python bench/predict.py [--images 1000] [--rounds 5]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import DATA, bare_fp32_rate, provenance, sample_model, update_section


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        import numpy as np

        from imagefit.data.load import load_image

        model = sample_model(Path(tmp))
        files = sorted((DATA / "validation").rglob("*.jpg"))[: args.images]
        engine = model.engine
        for f in files:
            f.read_bytes()  # the OS file cache, so that rounds time imagefit rather than the disk
        model.predict(files[:16])  # builds the engine and warms the threads
        batch = np.stack([model.preprocess.pixels(load_image(f)) for f in files[:64]])
        engine(batch[:16])
        reps = max(1, len(files) // len(batch))
        t_pred = t_raw = 0.0
        rounds = []
        for r in range(args.rounds):
            # A fresh cache folder per round: every timed photo is read, decoded and run.
            os.environ["IMAGEFIT_CACHE"] = str(Path(tmp) / f"cache-round{r}")
            t0 = time.perf_counter()
            preds = model.predict(files)
            dp = time.perf_counter() - t0
            assert len(preds) == len(files)
            t0 = time.perf_counter()
            for _ in range(reps):
                engine(batch)
            dr = time.perf_counter() - t0
            t_pred, t_raw = t_pred + dp, t_raw + dr
            rounds.append((len(files) / dp, reps * len(batch) / dr))
            print(f"round {r + 1}: predict {rounds[-1][0]:.1f} images/s, raw {rounds[-1][1]:.1f} images/s", flush=True)
        bare = bare_fp32_rate(len(batch), reps * args.rounds)
    pred_ips = args.rounds * len(files) / t_pred
    raw_ips = args.rounds * reps * len(batch) / t_raw
    per_round = ", ".join(f"{100 * p / q:.0f}%" for p, q in rounds)
    body = (
        "| path | images/s |\n| --- | ---: |\n"
        f"| `Model.predict` on {len(files)} JPEG files (read, hash, decode, resize, {engine.kind} lite0, cache write, head) | {pred_ips:.1f} |\n"
        f"| raw {engine.kind} {engine.precision} lite0 on pre-decoded uint8 images ({engine.batch_size} per run, {engine.threads} runs at a time) | {raw_ips:.1f} |\n"
        f"| bare fp32 ONNX Runtime lite0 on pre-decoded uint8 images (1 per run, one 1-thread run per core) | {bare:.1f} |\n\n"
        f"predict runs {pred_ips / bare:.2f}x the bare fp32 rate (target >= 1.6x); "
        f"predict reaches {100 * pred_ips / raw_ips:.0f}% of the raw {engine.kind} {engine.precision} throughput (target >= 80%) "
        f"({args.rounds} alternating rounds, each predict on a cold cache; per round: {per_round}).\n\n"
        f"{provenance()}"
    )
    update_section("predict", "Prediction throughput (CPU)", body)
    print(body)


if __name__ == "__main__":
    main()
