"""features.extract: the per-photo path (ONNX Runtime) and the batched path (torch, GPU) give the same answers."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest

import imagefit
from imagefit.data.load import SkipLog
from imagefit.engine import Engine
from imagefit.errors import ModelError
from imagefit.features import FeatureCache, _read_vector, extract


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


# -- the cache uses an entry only if it was made from what is asked, intact and finite ----------
def _cache_and_entries(model: imagefit.Model, eng: Engine, photos: list[Path], root: Path):  # type: ignore[no-untyped-def]
    cache = FeatureCache.for_backbone(model.meta["backbone"]["digest"], model.preprocess, root=root)
    fresh = extract(photos, eng, model.preprocess, SkipLog(), cache=cache)
    assert fresh.extracted == len(photos)
    entries = sorted(cache.with_precision(eng.precision).dir.rglob("*.npy"))
    assert len(entries) == len(photos)
    return cache, fresh, entries


def test_wrong_altered_or_stale_cache_entries_are_recomputed(trained_run: Path, photos: list[Path], tmp_path: Path) -> None:
    model = imagefit.load(trained_run)
    eng = Engine(lambda: model.backbone, model.preprocess, "features-test", "onnx")
    good = [p for p in photos if "cut" not in p.name and "text" not in p.name][:4]
    cache, fresh, entries = _cache_and_entries(model, eng, good, tmp_path)
    values = {e: e.read_bytes() for e in entries}
    # 1. A valid entry of another photo copied over this one's (wrong but readable).
    entries[0].write_bytes(values[entries[1]])
    # 2. One value changed in place (the checksum no longer matches).
    raw = bytearray(values[entries[1]])
    raw[200] ^= 0xFF
    entries[1].write_bytes(bytes(raw))
    # 3. A plain .npy of NaNs, as an older imagefit or a hand could leave it.
    np.save(entries[2], np.full(fresh.values.shape[-1], np.nan, np.float32))
    # 4. An entry made from other weights, moved into this backbone's folder.
    other = FeatureCache.for_backbone("0" * 32, model.preprocess, root=tmp_path / "other")
    other.put(entries[3].name.split(".")[0], "orig", fresh.values[3, 0] + 1)
    entries[3].write_bytes(next(other.dir.rglob("*.npy")).read_bytes())
    again = extract(good, eng, model.preprocess, SkipLog(), cache=cache)
    assert again.extracted == 4
    np.testing.assert_array_equal(again.values, fresh.values)
    assert extract(good, eng, model.preprocess, SkipLog(), cache=cache).extracted == 0  # repaired entries are used again


def test_non_finite_features_are_never_cached_nor_read(tmp_path: Path) -> None:
    cache = FeatureCache("ns", root=tmp_path)
    digest = "ab" * 16
    bad = np.ones(8, np.float32)
    bad[3] = np.inf
    cache.put(digest, "orig", bad)
    assert cache.get(digest, "orig") is None and not list(tmp_path.rglob("*.npy"))
    cache.put(digest, "orig", np.ones(8, np.float32))
    assert cache.get(digest, "flip") is None  # another view's record
    assert cache.get("cd" * 16, "orig") is None  # another photo's record
    np.testing.assert_array_equal(cache.get(digest, "orig"), np.ones(8, np.float32))
    # The entry stays a .npy file numpy reads; its provenance trailer follows the array.
    np.testing.assert_array_equal(np.load(next(tmp_path.rglob("*.npy"))), np.ones(8, np.float32))


def test_features_of_each_precision_are_kept_apart(tmp_path: Path) -> None:
    fp32 = FeatureCache("ns", root=tmp_path)
    bf16 = fp32.with_precision("bf16")
    assert fp32.dir != bf16.dir and bf16.source["precision"] == "bf16"
    digest = "ab" * 16
    bf16.put(digest, "orig", np.full(8, 2.0, np.float32))
    assert fp32.get(digest, "orig") is None
    # Moved by hand into the fp32 folder, the bf16 entry still says what it is and is refused.
    target = fp32._path(digest, "orig")
    target.parent.mkdir(parents=True)
    target.write_bytes(bf16._path(digest, "orig").read_bytes())
    assert fp32.get(digest, "orig") is None


def test_non_finite_features_from_the_engine_stop_with_a_clear_error(trained_run: Path, photos: list[Path], tmp_path: Path) -> None:
    model = imagefit.load(trained_run)
    eng = Engine(lambda: model.backbone, model.preprocess, "features-test", "onnx")

    def broken(x: np.ndarray) -> np.ndarray:
        return np.full((len(x), 8), np.nan, np.float32)

    eng.run_here = broken  # type: ignore[method-assign]
    cache = FeatureCache("nan", root=tmp_path)
    good = [p for p in photos if "cut" not in p.name and "text" not in p.name][:4]
    with pytest.raises(ModelError, match="non-finite features .* for 4 of 4 photos"):
        extract(good, eng, model.preprocess, SkipLog(), cache=cache)
    assert not list(tmp_path.rglob("*.npy"))  # nothing of it was cached either


def test_entries_are_read_without_pythons_compiler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Entries are read from worker threads; CPython 3.11's compiler (np.load's header parser) is not thread-safe."""
    import ast

    cache = FeatureCache("ns", root=tmp_path)
    digest, values = "ab" * 16, np.arange(1280, dtype=np.float32)
    cache.put(digest, "orig", values)

    def refuse(*_a: object, **_k: object) -> None:
        raise AssertionError("the cache parsed Python source")

    monkeypatch.setattr(ast, "literal_eval", refuse)
    monkeypatch.setattr(ast, "parse", refuse)
    got = cache.get(digest, "orig")
    assert got is not None and got.flags.writeable
    np.testing.assert_array_equal(got, values)
    # Any other array shape or type in an entry with a valid record is refused, not reinterpreted.
    for other in (values.astype(np.float64), values.reshape(32, 40), values.astype(">f4")):
        buf = io.BytesIO()
        np.save(buf, other, allow_pickle=False)
        assert _read_vector(buf.getvalue()) is None
