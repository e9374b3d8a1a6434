"""Shared helpers for the benchmark scripts: data location, machine line, BENCHMARKS.md sections."""

from __future__ import annotations

import os
import platform
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "cats_and_dogs_filtered"
BENCHMARKS = ROOT / "BENCHMARKS.md"


# The flags that decide which CPU engine and precision is fastest (imagefit.engines.cpu).
SPEED_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def machine() -> str:
    """One line describing where the figures were measured: cores, CPU model and its speed-relevant flags."""
    import torch

    from imagefit.engines.cpu import cpu_flags, cpu_model

    flags = " ".join(f for f in SPEED_FLAGS if f in cpu_flags()) or "none of " + " ".join(SPEED_FLAGS)
    return (
        f"{os.cpu_count()} cores ({cpu_model()}; flags: {flags}), Python {platform.python_version()}, "
        f"torch {torch.__version__}, {time.strftime('%Y-%m-%d')}"
    )


def bare_fp32_rate(images: int = 256, rounds: int = 1) -> float:
    """Images/s of the bare fp32 ONNX Runtime lite0 graph: one single-thread session per core, batch 1, decoded photos.

    The yardstick every CPU target is a ratio to (issue 19), measured in the same run as the figure it divides.
    """
    import numpy as np

    from imagefit.data.load import load_image
    from imagefit.engine import Engine, model_key
    from imagefit.models import create_backbone
    from imagefit.models.registry import state_digest

    backbone, spec = create_backbone("lite0")
    engine = Engine(backbone, spec.preprocess, model_key("lite0", state_digest(backbone)), "onnx", precision="fp32")
    files = sorted((DATA / "validation").rglob("*.jpg"))[:images]
    x = np.stack([spec.preprocess.pixels(load_image(f)) for f in files])
    engine(x[:8])  # warm
    t0 = time.perf_counter()
    for _ in range(rounds):
        engine(x)
    return rounds * len(x) / (time.perf_counter() - t0)


def provenance() -> str:
    """``Machine: ... Command: `python bench/<script> <args>`.``: where and how a section's figures were made."""
    return f"Machine: {machine()}. Command: `python bench/{Path(sys.argv[0]).name} {' '.join(sys.argv[1:])}`."


def update_section(key: str, title: str, body: str) -> None:
    """Replace (or append) the section between ``<!-- bench:key -->`` markers in BENCHMARKS.md."""
    start, end = f"<!-- bench:{key} -->", f"<!-- /bench:{key} -->"
    block = f"{start}\n## {title}\n\n{body.strip()}\n{end}"
    text = (
        BENCHMARKS.read_text()
        if BENCHMARKS.exists()
        else "# Benchmarks\n\nFigures written by the scripts in `bench/`; each section names its machine, date and command.\n"
    )
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda m: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    tmp = BENCHMARKS.with_suffix(".md.tmp")
    tmp.write_text(text)
    os.replace(tmp, BENCHMARKS)


def sample_model(tmp: Path):  # type: ignore[no-untyped-def]
    """A lite0 linear model trained on the bundled sample, with ``IMAGEFIT_CACHE`` under ``tmp`` (cold)."""
    os.environ["IMAGEFIT_CACHE"] = str(tmp / "cache")
    import imagefit

    sample = ROOT / "src" / "imagefit" / "sample_data"
    run = imagefit.train(sample / "train", val=sample / "val", out=tmp / "run")
    return imagefit.load(run.path)
