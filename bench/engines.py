"""Inference engines side by side on this CPU: raw lite0 throughput and agreement with torch fp32.

Every engine runs the same lite0 weights on the same pre-decoded uint8 photos (cats_and_dogs_filtered
validation), in one process, taking turns in interleaved rounds so background load hits them alike.
Agreement is the largest difference in class probability, through a head trained on the bundled
sample, against plain torch fp32. Writes the "Inference engines (CPU)" section of BENCHMARKS.md.
Usage: ``python bench/engines.py [--images 256] [--rounds 3]``.
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
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        import numpy as np
        import openvino as ov
        import torch

        from imagefit.data.load import load_image
        from imagefit.engine import Engine, PixelModel

        model = sample_model(Path(tmp))
        files = sorted((DATA / "validation").rglob("*.jpg"))[:: max(1, 1000 // args.images)][: args.images]
        x = np.stack([model.preprocess.pixels(load_image(f)) for f in files])
        pixel = PixelModel(model.backbone, model.preprocess.mean, model.preprocess.std).eval()
        key = f"bench-{model.meta['backbone']['digest']}"
        engines: dict[str, Engine] = {kind: Engine(lambda: model.backbone, model.preprocess, key, kind) for kind in ("openvino", "onnx")}
        graph = next((Path(tmp) / "cache" / "onnx").glob("bench-*.onnx"))
        core = ov.Core()
        ov_bf16 = core.compile_model(
            core.read_model(str(graph)), "CPU", {"INFERENCE_PRECISION_HINT": "bf16", "PERFORMANCE_HINT": "LATENCY"}
        ).create_infer_request()
        cl = PixelModel(model.backbone, model.preprocess.mean, model.preprocess.std).eval().to(memory_format=torch.channels_last)

        def torch_run(m: torch.nn.Module, bf16: bool) -> Callable[[np.ndarray], np.ndarray]:
            def run_(batch: np.ndarray) -> np.ndarray:
                out = []
                with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    for s in range(0, len(batch), 32):
                        out.append(m(torch.from_numpy(batch[s : s + 32])).float().numpy())
                return np.concatenate(out)

            return run_

        def ov_bf16_run(batch: np.ndarray) -> np.ndarray:
            return np.concatenate([ov_bf16.infer({0: np.ascontiguousarray(batch[s : s + 4])})[0].copy() for s in range(0, len(batch), 4)])

        paths: dict[str, tuple[str, Callable[[np.ndarray], np.ndarray]]] = {
            "openvino": ("OpenVINO fp32, 1 request over all cores, batch 2 (opt-in)", engines["openvino"]),
            "onnx": ("ONNX Runtime fp32, one 1-thread run per core, batch 1 (default)", engines["onnx"]),
            "torch": ("PyTorch fp32 NCHW, batch 32", torch_run(pixel, False)),
            "torch_cl": ("PyTorch fp32 channels_last, batch 32", torch_run(cl, False)),
            "torch_cl_bf16": ("PyTorch bf16 autocast channels_last, batch 32", torch_run(cl, True)),
            "openvino_bf16": ("OpenVINO bf16 (AMX), batch 4: not used", ov_bf16_run),
        }
        ref = model.head_probs(torch_run(pixel, False)(x)[:, None, :], 1.0)
        agree = {name: float(np.abs(model.head_probs(fn(x)[:, None, :], 1.0) - ref).max()) for name, (_, fn) in paths.items()}
        times: dict[str, float] = dict.fromkeys(paths, 0.0)
        for _ in range(args.rounds):
            for name, (_, fn) in paths.items():
                fn(x[:8])  # warm
                t0 = time.perf_counter()
                fn(x)
                times[name] += time.perf_counter() - t0
    rows = [f"| {desc} | {args.rounds * len(x) / times[name]:.1f} | {agree[name]:.1e} |" for name, (desc, _) in paths.items()]
    body = (
        "| engine | images/s | max probability difference vs torch fp32 |\n| --- | ---: | ---: |\n"
        + "\n".join(rows)
        + f"\n\n{len(x)} validation photos, pre-decoded to uint8 224x224, {args.rounds} interleaved rounds. "
        f"OpenVINO fp32 runs {times['onnx'] / times['openvino']:.2f}x as fast as ONNX Runtime but is opt-in (`IMAGEFIT_ENGINE=openvino`): "
        "its TBB thread pools do not survive a fork from a worker thread, which killed the test session's process. "
        "bf16 is faster still but moves probabilities by more than the 1e-3 every engine must hold, so it is not used.\n\n"
        f"{provenance()}"
    )
    update_section("engines", "Inference engines (CPU)", body)
    print(body)


if __name__ == "__main__":
    main()
