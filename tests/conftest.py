"""Shared fixtures: tiny generated images, the bundled sample set, the real photos, a trained run."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "src" / "imagefit" / "sample_data"
REAL = ROOT.parent / "shared" / "data" / "cats_and_dogs_filtered"

# Tests never touch the network: Hugging Face lookups stay in the local cache.
os.environ["HF_HUB_OFFLINE"] = "1"
# The suite runs the machine's default engine (OpenVINO bf16 on AMX CPUs, else ONNX Runtime fp32);
# IMAGEFIT_ENGINE / IMAGEFIT_PRECISION set in the environment choose another for the whole run.


@pytest.fixture(scope="session", autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One feature/ONNX cache per test session, never the user's."""
    path = tmp_path_factory.mktemp("imagefit-cache")
    os.environ["IMAGEFIT_CACHE"] = str(path)
    return path


def make_image(path: Path, color: tuple[int, int, int], size: tuple[int, int] = (48, 40), seed: int = 0, fmt: str | None = None) -> Path:
    """A small noisy image of one dominant colour (classes differ by colour)."""
    rng = np.random.default_rng(seed)
    arr = np.clip(np.array(color)[None, None, :] + rng.normal(0, 25, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format=fmt)
    return path


COLORS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (40, 60, 220)}


@pytest.fixture
def image_folder(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``image_folder(n_per_class=6, classes=("red","green"))`` -> class-folder dataset."""

    def make(n_per_class: int = 6, classes: tuple[str, ...] = ("red", "green"), root: Path | None = None, ext: str = ".png") -> Path:
        base = root or (tmp_path / "data")
        for c in classes:
            for i in range(n_per_class):
                make_image(base / c / f"{c}_{i}{ext}", COLORS[c], seed=i)
        return base

    return make


@pytest.fixture(scope="session")
def sample_data() -> Path:
    """The small sample set shipped with the package (train/ + val/)."""
    return SAMPLE


@pytest.fixture(scope="session")
def real_data() -> Path:
    """cats_and_dogs_filtered from ../shared (skips when absent)."""
    if not REAL.is_dir():
        pytest.skip(f"real photos not found at {REAL}")
    return REAL


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lite0 linear run on the bundled sample set (trained once per session, ~10 s)."""
    import imagefit

    out = tmp_path_factory.mktemp("runs") / "sample"
    run = imagefit.train(SAMPLE / "train", val=SAMPLE / "val", out=out, seed=0, model="lite0")  # named: never the auto step-up
    return run.path


@pytest.fixture
def make_img() -> Callable[..., Path]:
    """The :func:`make_image` helper as a fixture: ``make_img(path, color, size=..., seed=..., fmt=...)``."""
    return make_image


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """Run ``imagefit.cli.main`` in-process: ``cli(*args) -> (exit code, stdout, text)``.

    ``text`` is stdout + stderr with rich's line wrapping undone, read as a user
    would: results go to stdout, notes and errors to stderr.
    """
    from imagefit.cli import main

    def run(*args: str | Path) -> tuple[int, str, str]:
        capsys.readouterr()
        with pytest.raises(SystemExit) as info:
            main([str(a) for a in args])
        out, err = capsys.readouterr()
        return (0 if info.value.code is None else int(info.value.code)), out, " ".join((out + " " + err).split())

    return run
