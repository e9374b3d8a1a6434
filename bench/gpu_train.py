"""GPU training throughput (run on a CUDA machine; CI and the 2-core dev box have none).

Measures, for lite0 (224 px) and lite2 (260 px), all layers trainable, bf16 autocast,
channels_last, AdamW, on cats_and_dogs_filtered/train (2,000 JPEGs, cycled):

1. the limit: synthetic tensors already on the GPU;
2. imagefit's data path: JPEG bytes read in threads, nvjpeg batch decode + resize/crop/flip on the
   GPU (``imagefit.data.gpu.DeviceJpegLoader``, what ``--loader auto`` picks on CUDA);
3. a plain loop: torch DataLoader (16 workers) + Pillow + timm transforms;

then times ``imagefit train --strategy finetune --device cuda`` to its validation accuracy.
Writes the "Training (GPU)" section of BENCHMARKS.md.
Usage: ``python bench/gpu_train.py [--steps 60] [--batch 256] [--compile]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import DATA, provenance, update_section


def _model(name: str, compile_: bool):  # type: ignore[no-untyped-def]
    import torch

    from imagefit.models import create_model

    m = create_model(name, 2).cuda().to(memory_format=torch.channels_last).train()
    return torch.compile(m) if compile_ else m


def _step_loop(model, batches, steps: int) -> float:  # type: ignore[no-untyped-def]
    import torch
    import torch.nn.functional as F

    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    n, t0 = 0, 0.0
    for i, (x, y) in enumerate(batches):
        if i == 10:  # warm-up (cuDNN autotune, compile, worker start) is not timed
            torch.cuda.synchronize()
            t0, n = time.perf_counter(), 0
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = F.binary_cross_entropy_with_logits(model(x)[:, 0].float(), y.float())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        n += len(y)
        if i >= steps + 10:
            break
    torch.cuda.synchronize()
    return n / (time.perf_counter() - t0)


def _cycle(make):  # type: ignore[no-untyped-def]
    while True:
        yield from make()


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--compile", action="store_true")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("no CUDA device: run this on a GPU machine")
    import timm
    from timm.data import create_transform, resolve_data_config
    from torchvision.datasets import ImageFolder

    from imagefit.data.gpu import DeviceJpegLoader
    from imagefit.models import get_spec

    rows = []
    paths = sorted((DATA / "train").rglob("*.jpg"))
    labels = [0 if p.parent.name == "cats" else 1 for p in paths]
    for name in ("lite0", "lite2"):
        pre = get_spec(name).preprocess
        s = pre.input_size
        x = torch.randn(args.batch, 3, s, s, device="cuda").contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 2, (args.batch,), device="cuda")
        synth = _step_loop(_model(name, args.compile), _cycle(lambda: [(x, y)]), args.steps)
        loader = DeviceJpegLoader(paths, labels, pre, torch.device("cuda"), "light")
        order = lambda: torch.randperm(len(paths)).tolist()  # noqa: E731
        ours = _step_loop(_model(name, args.compile), _cycle(lambda: loader.batches(order(), args.batch)), args.steps)
        tf = create_transform(**resolve_data_config({}, model=timm.create_model(get_spec(name).architecture)), is_training=True)
        dl = torch.utils.data.DataLoader(
            ImageFolder(str(DATA / "train"), transform=tf),
            batch_size=args.batch,
            shuffle=True,
            num_workers=16,
            pin_memory=True,
            persistent_workers=True,
            drop_last=True,
        )
        plain = _step_loop(
            _model(name, args.compile),
            _cycle(
                lambda: (
                    (a.cuda(non_blocking=True).contiguous(memory_format=torch.channels_last), b.cuda(non_blocking=True)) for a, b in dl
                )
            ),
            args.steps,
        )
        rows.append((name, s, synth, ours, plain))
        print(name, synth, ours, plain, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "imagefit",
                "train",
                str(DATA / "train"),
                "--val",
                str(DATA / "validation"),
                "--strategy",
                "finetune",
                "--device",
                "cuda",
                "--out",
                f"{tmp}/run",
            ],
            check=True,
        )
        wall = time.perf_counter() - t0
        acc = json.loads(Path(f"{tmp}/run/metrics.json").read_text())["accuracy"]
    lines = [
        "| model | px | synthetic tensors img/s | imagefit JPEG path img/s (% of limit) | plain DataLoader+Pillow img/s | imagefit / plain |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, s, synth, ours, plain in rows:
        lines.append(f"| {name} | {s} | {synth:.0f} | {ours:.0f} ({100 * ours / synth:.0f}%) | {plain:.0f} | {ours / plain:.1f}x |")
    body = (
        "\n".join(lines)
        + f"\n\n`imagefit train --strategy finetune --device cuda` on cats_and_dogs_filtered: {wall:.1f} s wall to validation accuracy {acc:.4f}.\n\n"
    )
    body += f"GPU: {torch.cuda.get_device_name()}. Batch {args.batch}, bf16 autocast, channels_last{', torch.compile' if args.compile else ''}. {provenance()}"
    update_section("gpu", "Training (GPU)", body)
    print(body)


if __name__ == "__main__":
    main()
