"""features.extract: the per-photo path (ONNX Runtime) and the batched path (torch, GPU) give the same answers."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import imagefit
from imagefit.data.load import SkipLog
from imagefit.engine import Engine
from imagefit.features import FeatureCache, extract


@pytest.fixture(scope="module")
def photos(sample_data: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Real photos with unreadable files among them (one at the very end)."""
    src = sorted((sample_data / "val").rglob("*.jpg"))[:6]
    d = tmp_path_factory.mktemp("photos")
    out = []
    for i, p in enumerate(src):
        out.append(Path(shutil.copy(p, d / f"{i}-{p.name}")))
        if i == 2:
            bad = d / "2b-cut.jpg"
            bad.write_bytes(p.read_bytes()[:300])
            out.append(bad)
    (d / "z-text.jpg").write_text("not a photo")
    out.append(d / "z-text.jpg")
    return out


def _run(engine: Engine, model: imagefit.Model, paths: list[Path], cache: FeatureCache | None, views: tuple[str, ...]):  # type: ignore[no-untyped-def]
    skipped, ticks = SkipLog(), []
    feats = extract(paths, engine, model.preprocess, skipped, cache=cache, views=views, progress=ticks.append)
    return feats, skipped, sum(ticks)


@pytest.mark.parametrize("views", [("orig",), ("orig", "flip")])
def test_per_photo_and_batched_paths_agree(trained_run: Path, photos: list[Path], tmp_path: Path, views: tuple[str, ...]) -> None:
    model = imagefit.load(trained_run)
    onnx = Engine(lambda: model.backbone, model.preprocess, "features-test", "onnx")
    torch_ = Engine(lambda: model.backbone, model.preprocess, "features-test", "torch")
    assert onnx.concurrent and not torch_.concurrent
    results = {}
    for name, eng in (("per_photo", onnx), ("batched", torch_)):
        cache = FeatureCache(name, root=tmp_path)
        first = _run(eng, model, photos, cache, views)
        again = _run(eng, model, photos, cache, views)  # every readable photo from the cache now
        results[name] = first
        feats, skipped, ticks = first
        assert feats.extracted == len(photos) - 2 and again[0].extracted == 0
        assert ticks == again[2] == len(photos)  # progress reaches every file, unreadable ones included
        assert [Path(p).name for p, _ in skipped.items] == ["2b-cut.jpg", "z-text.jpg"]
        assert [r for _, r in skipped.items] == [r for _, r in again[1].items]
        np.testing.assert_array_equal(feats.indices, again[0].indices)
        np.testing.assert_allclose(feats.values, again[0].values, rtol=0, atol=0)
        assert feats.values.shape == (len(photos) - 2, len(views), model.meta["backbone"]["num_features"])
    a, b = results["per_photo"][0], results["batched"][0]
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_allclose(a.values, b.values, rtol=0, atol=2e-4)
    if "flip" in views:
        assert not np.allclose(a.values[:, 0], a.values[:, 1])  # the mirror image is a different input


def test_per_photo_path_without_cache_and_empty_input(trained_run: Path, photos: list[Path]) -> None:
    model = imagefit.load(trained_run)
    feats, skipped, ticks = _run(model.engine, model, photos[:3], None, ("orig",))
    assert feats.extracted == 3 and ticks == 3 and not skipped.items
    empty, _, ticks = _run(model.engine, model, [], None, ("orig",))
    assert empty.values.shape[0] == 0 and ticks == 0
