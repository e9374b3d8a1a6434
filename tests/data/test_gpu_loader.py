"""The device (nvjpeg) loader, exercised on the CPU as CI has no GPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from imagefit.data.gpu import DeviceJpegLoader
from imagefit.data.load import SkipLog, load_image
from imagefit.models import get_spec


def test_device_loader_matches_pillow_and_skips_bad_files(tmp_path: Path, sample_data: Path) -> None:
    pre = get_spec("lite0").preprocess
    good = sorted((sample_data / "val" / "cats").glob("*.jpg"))[:4]
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(good[0].read_bytes()[:200])  # JPEG magic, truncated body
    png = tmp_path / "photo.png"
    load_image(good[1]).save(png)  # not a JPEG: goes through Pillow
    paths = [*good, bad, png]
    skipped = SkipLog()
    loader = DeviceJpegLoader(paths, [0, 0, 0, 0, 1, 1], pre, torch.device("cpu"), "none", skipped)
    batches = list(loader.batches(list(range(len(paths))), 3))
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    assert x.shape == (5, 3, pre.input_size, pre.input_size)
    assert y.tolist() == [0, 0, 0, 0, 1]
    assert [p for p, _ in skipped.items] == [str(bad)]
    # Same pixels as the Pillow eval path up to resampling differences (both bicubic, antialiased).
    ref = torch.from_numpy(pre(load_image(good[0])))
    assert (x[0] - ref).abs().mean() < 0.05
    # The bad file is remembered and not decoded again next epoch.
    again = list(loader.batches(list(range(len(paths))), 8))
    assert sum(len(b[1]) for b in again) == 5 and len(skipped) == 1


def test_device_loader_light_flips_some(sample_data: Path) -> None:
    pre = get_spec("lite0").preprocess
    paths = sorted((sample_data / "val" / "dogs").glob("*.jpg"))[:8]
    plain = torch.cat([b[0] for b in DeviceJpegLoader(paths, [1] * 8, pre, torch.device("cpu")).batches(range(8), 8)])
    g = torch.Generator().manual_seed(0)
    aug = torch.cat([b[0] for b in DeviceJpegLoader(paths, [1] * 8, pre, torch.device("cpu"), "light").batches(range(8), 8, g)])
    flipped = [bool(torch.allclose(a, p.flip(-1))) for a, p in zip(aug, plain)]
    unchanged = [bool(torch.allclose(a, p)) for a, p in zip(aug, plain)]
    assert all(f or u for f, u in zip(flipped, unchanged)) and any(flipped) and any(unchanged)
    assert np.isfinite(aug.numpy()).all()


def test_train_with_device_loader_on_cpu(tmp_path: Path, sample_data: Path) -> None:
    import imagefit

    run = imagefit.train(
        sample_data / "train",
        val=sample_data / "val",
        out=tmp_path / "run",
        model="simple_cnn",
        strategy="full",
        epochs=1,
        batch_size=16,
        loader="device",
    )
    assert run.metrics["n_images"] == 24
    assert len(run.history) == 1
