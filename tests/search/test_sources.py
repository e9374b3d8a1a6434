"""search.sources: what a search counts as still to extract is what extraction would really compute."""

from __future__ import annotations

from pathlib import Path

from imagefit.data.discover import discover
from imagefit.data.load import SkipLog
from imagefit.search.sources import FeatureSource, SourceKey, file_digests


def test_missing_counts_the_cache_of_the_engines_precision(sample_data: Path, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """After extraction nothing is missing, whatever precision the engine computes in (bf16 on AMX: not the fp32 folder)."""
    monkeypatch.setenv("IMAGEFIT_CACHE", str(tmp_path / "cache"))
    images = discover(sample_data / "val").train
    digests = file_digests(images.paths)
    src = FeatureSource(SourceKey("lite0"))
    assert src.missing(digests, ("orig", "flip")) == len(images)
    src.features(images, ("orig", "flip"), SkipLog())
    assert src.computed_views == 2 * len(images)
    assert src.missing(digests, ("orig", "flip")) == 0
    again = FeatureSource(SourceKey("lite0"))
    again.features(images, ("orig", "flip"), SkipLog())
    assert again.computed_views == 0  # all from the cache: a rate learned from this would be nonsense, and none is
