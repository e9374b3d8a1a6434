"""prepare(): where validation comes from, the description, warnings, and prepare_data's tuple."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagefit.config import RunConfig
from imagefit.data.load import SkipLog
from imagefit.data.prepare import prepare, prepare_data, skipped_summary
from imagefit.errors import ConfigError


def _config(**kw: object) -> RunConfig:
    return RunConfig.from_options(model="simple_cnn", seed=0, **kw)


def test_split_when_no_validation_folder(image_folder) -> None:
    root = image_folder(n_per_class=5)
    p = prepare(root, None, _config(val_split=0.2))
    assert len(p.train) == 8 and len(p.val) == 2 and p.test is None
    assert p.layout == "class folders" and "20% of each class" in p.description
    assert p.duplicates is not None and not p.duplicates and p.warnings == []
    said: list[str] = []
    train, val = prepare_data(root, None, _config(val_split=0.2), info=said.append)
    assert train.paths == p.train.paths and val.paths == p.val.paths
    assert said == [p.description] and said[0].startswith("class folders: 2 classes (green, red)")


def test_explicit_val_and_no_split(tmp_path: Path, image_folder) -> None:
    data = image_folder(n_per_class=3, root=tmp_path / "a")
    other = image_folder(n_per_class=2, root=tmp_path / "b")
    p = prepare(data, other, _config())
    assert len(p.train) == 6 and len(p.val) == 4 and f"validation from {other}" in p.description
    with pytest.raises(ConfigError, match="validation set is needed"):
        prepare(data, None, _config(val_split=0.0))


def test_skipped_summary() -> None:
    log = SkipLog()
    assert skipped_summary(log) is None
    for i in range(5):
        log.add(f"p{i}", "why")
    line = skipped_summary(log)
    assert line is not None and line.startswith("left out 5 entries") and "(2 more)" in line
