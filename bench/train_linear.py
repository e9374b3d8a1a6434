"""Side by side on cats_and_dogs_filtered (2,000 train + 1,000 validation photos), one process tree:

1. imagefit: ``imagefit train --strategy linear`` + ``imagefit evaluate`` from JPEG files, cold cache,
   once per ``--precisions`` (default: this CPU's automatic choice and fp32), each as a ratio to the
   time the bare fp32 ONNX Runtime graph needs for the same 3,000 photos (measured in the same run);
2. the reference loop a user writes from the timm docs: the same lite0 weights, torch DataLoader,
   Pillow, timm transforms, AdamW, fine-tuning for ``--ref-epochs`` (default 3) epochs;
3. the Keras notebooks' recipe (seed 003's CNN, 150x150, RMSprop) on Keras 3 (torch backend),
   when ``keras`` is installed.

Prints wall time, images/s and accuracy for each and writes the "Training (CPU)" section of
BENCHMARKS.md. Usage: ``python bench/train_linear.py [--precisions auto fp32] [--ref-epochs 3] [--keras-epochs 5] [--skip-ref]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import DATA, bare_fp32_rate, provenance, update_section

IMAGEFIT = [sys.executable, "-m", "imagefit"]


SAMPLE = Path(__file__).resolve().parents[1] / "src" / "imagefit" / "sample_data"


def bench_imagefit(tmp: Path, precision: str = "auto") -> dict[str, float]:
    env = {**os.environ, "IMAGEFIT_CACHE": str(tmp / "cache"), "IMAGEFIT_PRECISION": precision}  # cold cache: extraction is timed
    # Untimed first use of the backbone on this machine: a train on the bundled sample photos exports
    # and caches its graph (once per machine, backbone and precision, like a weights download); the
    # cats/dogs feature cache stays cold. Its time is reported apart.
    t_first = time.perf_counter()
    subprocess.run(
        [*IMAGEFIT, "train", str(SAMPLE / "train"), "--val", str(SAMPLE / "val"), "--out", str(tmp / "first-use")],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    first_use_s = time.perf_counter() - t_first
    out = tmp / "run"
    t0 = time.perf_counter()
    subprocess.run(
        [*IMAGEFIT, "train", str(DATA / "train"), "--val", str(DATA / "validation"), "--out", str(out)],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    t1 = time.perf_counter()
    metrics_path = tmp / "eval.json"
    subprocess.run(
        [*IMAGEFIT, "evaluate", str(out), str(DATA / "validation"), "--out", str(metrics_path)],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    t2 = time.perf_counter()
    # A second train on the same photos (another seed) reuses the feature cache.
    subprocess.run(
        [*IMAGEFIT, "train", str(DATA / "train"), "--val", str(DATA / "validation"), "--out", str(tmp / "run2"), "--seed", "1"],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    t3 = time.perf_counter()
    m = json.loads(metrics_path.read_text())
    return {
        "train_s": t1 - t0,
        "eval_s": t2 - t1,
        "wall_s": t2 - t0,
        "accuracy": m["accuracy"],
        "log_loss": m["log_loss"],
        "retrain_s": t3 - t2,
        "first_use_s": first_use_s,
        "images": 3000,
    }


def bench_reference(epochs: int) -> dict[str, float]:
    import timm
    import torch
    from timm.data import create_transform, resolve_data_config
    from torchvision.datasets import ImageFolder

    from imagefit.models.backbones import load_lite_state

    torch.manual_seed(0)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0)
    load_lite_state("lite0", model)
    model.reset_classifier(2)
    cfg = resolve_data_config({}, model=model)
    train_tf = create_transform(**cfg, is_training=True)
    eval_tf = create_transform(**cfg)
    train_ds = ImageFolder(str(DATA / "train"), transform=train_tf)
    val_ds = ImageFolder(str(DATA / "validation"), transform=eval_tf)
    workers = min(2, os.cpu_count() or 1)
    train_dl = torch.utils.data.DataLoader(train_ds, batch_size=32, shuffle=True, num_workers=workers)
    val_dl = torch.utils.data.DataLoader(val_ds, batch_size=64, num_workers=workers)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    t0 = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for x, y in train_dl:
            opt.zero_grad()
            loss_fn(model(x), y).backward()
            opt.step()
    t1 = time.perf_counter()
    model.eval()
    correct = 0
    with torch.inference_mode():
        for x, y in val_dl:
            correct += int((model(x).argmax(1) == y).sum())
    t2 = time.perf_counter()
    return {
        "train_s": t1 - t0,
        "eval_s": t2 - t1,
        "wall_s": t2 - t0,
        "accuracy": correct / len(val_ds),
        "images": len(train_ds) * epochs + len(val_ds),
    }


def bench_keras(epochs: int) -> dict[str, float] | None:
    os.environ.setdefault("KERAS_BACKEND", "torch")
    try:
        import keras
    except ImportError:
        return None
    import numpy as np
    import torch
    from keras import layers
    from PIL import Image
    from torchvision.datasets import ImageFolder

    # image_dataset_from_directory needs TensorFlow; with the torch backend Keras 3 trains from a
    # torch DataLoader, which decodes with Pillow at 150x150 as the notebooks' generator did.
    def to_array(img: Image.Image) -> np.ndarray:
        return np.asarray(img.convert("RGB").resize((150, 150), Image.Resampling.BILINEAR), dtype=np.float32)

    def loader(split: str, shuffle: bool) -> torch.utils.data.DataLoader:
        ds = ImageFolder(str(DATA / split), transform=to_array, target_transform=lambda y: np.float32(y))
        return torch.utils.data.DataLoader(ds, batch_size=20, shuffle=shuffle, num_workers=2, generator=torch.Generator().manual_seed(0))

    keras.utils.set_random_seed(0)
    train, val = loader("train", True), loader("validation", False)
    model = keras.Sequential(
        [
            keras.Input((150, 150, 3)),
            layers.Rescaling(1.0 / 255),
            layers.RandomRotation(40 / 360),
            layers.RandomZoom(0.2),
            layers.RandomTranslation(0.2, 0.2),
            layers.RandomFlip("horizontal"),
            layers.Conv2D(32, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(128, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(128, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Flatten(),
            layers.Dropout(0.5),
            layers.Dense(512, activation="relu"),
            layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(optimizer=keras.optimizers.RMSprop(1e-4), loss="binary_crossentropy", metrics=["accuracy"])
    t0 = time.perf_counter()
    model.fit(train, epochs=epochs, verbose=0)
    t1 = time.perf_counter()
    _, acc = model.evaluate(val, verbose=0)
    t2 = time.perf_counter()
    return {"train_s": t1 - t0, "eval_s": t2 - t1, "wall_s": t2 - t0, "accuracy": float(acc), "images": 2000 * epochs + 1000}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--precisions", nargs="+", default=["auto", "fp32"], choices=["auto", "fp32", "bf16"])
    ap.add_argument("--ref-epochs", type=int, default=3)
    ap.add_argument("--keras-epochs", type=int, default=5)
    ap.add_argument("--skip-ref", action="store_true")
    ap.add_argument("--skip-keras", action="store_true")
    args = ap.parse_args()
    if not DATA.is_dir():
        sys.exit(f"data not found: {DATA}")
    rows = []
    from imagefit.engines.cpu import default_cpu_engine

    auto = "{} {}".format(*default_cpu_engine())
    for precision in args.precisions:
        with tempfile.TemporaryDirectory() as tmp:
            r = bench_imagefit(Path(tmp), precision)
            rows.append(
                (
                    f"imagefit train --strategy linear + evaluate (cold feature cache), features {auto if precision == 'auto' else precision}",
                    r,
                )
            )
            print(f"imagefit {precision}: {r}", flush=True)
    bare = bare_fp32_rate()
    bare_s = 3000 / bare
    print(f"bare fp32 ONNX Runtime: {bare:.1f} images/s", flush=True)
    ref = None
    if not args.skip_ref:
        ref = bench_reference(args.ref_epochs)
        rows.append((f"reference timm loop, fine-tune {args.ref_epochs} epochs + eval", ref))
        print(f"reference: {ref}", flush=True)
    if not args.skip_keras:
        k = bench_keras(args.keras_epochs)
        if k is not None:
            rows.append((f"Keras 3 (torch backend) seed-003 CNN, {args.keras_epochs} epochs + eval", k))
            print(f"keras: {k}", flush=True)
    lines = ["| pipeline | wall s | images/s | val accuracy | wall / bare fp32 time |", "| --- | ---: | ---: | ---: | ---: |"]
    lines.append(
        f"| bare fp32 ONNX Runtime lite0, 1-thread session per core, batch 1, decoded photos | {bare_s:.1f} | {bare:.1f} | | 1.00 |"
    )
    for name, r in rows:
        lines.append(f"| {name} | {r['wall_s']:.1f} | {r['images'] / r['wall_s']:.1f} | {r['accuracy']:.4f} | {r['wall_s'] / bare_s:.2f} |")
    body = "\n".join(lines)
    imf = rows[0][1]
    body += (
        f"\n\nTarget (issue 19): imagefit train + evaluate <= 0.75x the bare fp32 time for the 3,000 photos ({0.75 * bare_s:.1f} s here)."
    )
    body += f"\n\nimagefit: train {imf['train_s']:.1f} s + evaluate {imf['eval_s']:.1f} s; log loss {imf['log_loss']:.4f}; "
    body += f"a second train on the same photos (feature cache warm, seed 1) took {imf['retrain_s']:.1f} s. "
    body += (
        "The feature cache is cold (every photo is decoded and run); the backbone's graph was exported and cached by an untimed "
        f"first use on the bundled sample photos ({imf['first_use_s']:.1f} s for that whole `imagefit train`; once per machine, "
        "backbone and precision).\n"
    )
    if ref is not None:
        body += f"\nSpeed-up over the reference loop, measured in the same run: {ref['wall_s'] / imf['wall_s']:.1f}x.\n"
    body += f"\n{provenance()} Wall times include process start and model load."
    update_section("train", "Training on cats_and_dogs_filtered (CPU)", body)
    print(body)


if __name__ == "__main__":
    main()
