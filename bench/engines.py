"""Inference engines side by side on this CPU: raw lite0 throughput and agreement with torch fp32.

Every engine runs the same lite0 weights on the same pre-decoded uint8 photos (cats_and_dogs_filtered
validation), in one process, taking turns in interleaved rounds so background load hits them alike.
Agreement is the largest difference in class probability, through a head trained on the bundled
sample, against plain torch fp32. The int8 rows run one graph, quantized on 200 training photos (a
seeded choice), by ONNX Runtime and by OpenVINO. Writes the "Inference engines (CPU)" section of
BENCHMARKS.md unless ``--no-write``.
Usage: ``python bench/engines.py [--images 256] [--rounds 3] [--no-write]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import DATA, provenance, sample_model, update_section


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-write", action="store_true", help="print the section, leave BENCHMARKS.md as it is")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        import numpy as np
        import torch

        from imagefit.data.load import load_image
        from imagefit.engine import Engine, PixelModel
        from imagefit.engines.cpu import bf16_supported, default_cpu_engine, importable
        from imagefit.engines.quantize import calibration_choice

        model = sample_model(Path(tmp))
        files = sorted((DATA / "validation").rglob("*.jpg"))[:: max(1, 1000 // args.images)][: args.images]
        x = np.stack([model.preprocess.pixels(load_image(f)) for f in files])
        pixel = PixelModel(model.backbone, model.preprocess.mean, model.preprocess.std).eval()
        key = f"bench-{model.meta['backbone']['digest']}"

        precisions = [("onnx", "fp32"), ("openvino", "fp32")] + ([("openvino", "bf16")] if bf16_supported() else [])
        precisions += [("onnx", "int8")] + ([("openvino", "int8")] if importable("openvino") else [])
        # Never the timed photos (validation): training photos, as a user's run would calibrate.
        calibration = calibration_choice(sorted((DATA / "train").rglob("*.jpg")), seed=0)
        engines = {
            f"{k}_{p}": Engine(
                lambda: model.backbone, model.preprocess, key, k, precision=p, calibration=calibration if p == "int8" else None
            )
            for k, p in precisions
        }
        cl = PixelModel(model.backbone, model.preprocess.mean, model.preprocess.std).eval().to(memory_format=torch.channels_last)

        def torch_run(m: torch.nn.Module, bf16: bool) -> Callable[[np.ndarray], np.ndarray]:
            def run_(batch: np.ndarray) -> np.ndarray:
                out = []
                with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    for s in range(0, len(batch), 32):
                        out.append(m(torch.from_numpy(batch[s : s + 32])).float().numpy())
                return np.concatenate(out)

            return run_

        default = "_".join(default_cpu_engine())
        paths: dict[str, tuple[str, Callable[[np.ndarray], np.ndarray]]] = {
            name: (
                f"{eng.kind} {eng.precision}, {eng.threads} concurrent runs of {eng.batch_size}"
                + (" (default)" if name == default else ""),
                eng,
            )
            for name, eng in engines.items()
        }
        paths["onnx_fp32"] = (
            "bare fp32 ONNX Runtime, one 1-thread run per core, batch 1" + (" (default)" if default == "onnx_fp32" else ""),
            engines["onnx_fp32"],
        )
        paths.update(
            {
                "torch": ("PyTorch fp32 NCHW, batch 32", torch_run(pixel, False)),
                "torch_cl": ("PyTorch fp32 channels_last, batch 32", torch_run(cl, False)),
                "torch_cl_bf16": ("PyTorch bf16 autocast channels_last, batch 32", torch_run(cl, True)),
            }
        )
        ref = model.head_probs(torch_run(pixel, False)(x)[:, None, :], 1.0)
        agree = {name: float(np.abs(model.head_probs(fn(x)[:, None, :], 1.0) - ref).max()) for name, (_, fn) in paths.items()}
        times: dict[str, float] = dict.fromkeys(paths, 0.0)
        for _ in range(args.rounds):
            for name, (_, fn) in paths.items():
                fn(x[:8])  # warm
                t0 = time.perf_counter()
                fn(x)
                times[name] += time.perf_counter() - t0
    bare = times["onnx_fp32"]
    rows = [
        f"| {desc} | {args.rounds * len(x) / times[name]:.1f} | {bare / times[name]:.2f} | {agree[name]:.1e} |"
        for name, (desc, _) in paths.items()
    ]
    body = (
        "| engine | images/s | x bare fp32 | max probability difference vs torch fp32 (same head) |\n| --- | ---: | ---: | ---: |\n"
        + "\n".join(rows)
        + f"\n\n{len(x)} validation photos, pre-decoded to uint8 224x224, {args.rounds} interleaved rounds. "
        "The default is the fastest engine that holds accuracy: bf16 features are accepted by their effect on accuracy and "
        "log loss with a head trained on bf16 features (Feature precision section), not by per-photo identity with fp32; "
        "the difference column here is for information (a head trained on fp32 features, fed bf16 ones). "
        "int8: one graph quantized on 200 training photos (ONNX Runtime static QDQ, per-channel weights), run by each engine.\n\n"
        f"{provenance()}"
    )
    if not args.no_write:
        update_section("engines", "Inference engines (CPU)", body)
    print(body)


if __name__ == "__main__":
    main()
