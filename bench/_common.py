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


def machine() -> str:
    """One line describing where the figures were measured."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, torch {torch.__version__}, {time.strftime('%Y-%m-%d')}"


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
