"""--precision int8: calibrated on training photos, the quantized graph saved with the run and checked when restored."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import imagefit
from imagefit.artifacts import INT8_GRAPH_FILE
from imagefit.engine import graph_path, model_key
from imagefit.errors import ArtifactError


@pytest.fixture(scope="module")
def int8_run(tmp_path_factory: pytest.TempPathFactory, sample_data: Path) -> Path:
    out = tmp_path_factory.mktemp("int8") / "run"
    imagefit.train(
        sample_data / "train",
        val=sample_data / "val",
        out=out,
        model="simple_cnn",
        pretrained=False,
        precision="int8",
        epochs=3,
        progress=False,
    )
    return out


def _cached_graph(run: Path) -> Path:
    meta = json.loads((run / "imagefit.json").read_text())
    key = model_key(meta["backbone"]["name"], meta["backbone"]["digest"])
    return graph_path(key, imagefit.load(run).preprocess, meta["features"]["precision"])


def test_int8_run_saves_its_graph(int8_run: Path) -> None:
    feats = json.loads((int8_run / "imagefit.json").read_text())["features"]
    assert feats["precision"].startswith("int8-") and len(feats["precision"]) == len("int8-") + 16
    assert feats["graph"] == INT8_GRAPH_FILE and (int8_run / INT8_GRAPH_FILE).is_file()
    assert (int8_run / INT8_GRAPH_FILE).read_bytes() == _cached_graph(int8_run).read_bytes()


def test_graph_restored_into_an_empty_cache(int8_run: Path, sample_data: Path, tmp_path: Path) -> None:
    photos = sorted((sample_data / "val").rglob("*.jpg"))[:6]
    want = imagefit.load(int8_run).predict(photos).probs
    _cached_graph(int8_run).unlink()  # another machine, or a cleared cache
    got = imagefit.load(int8_run).predict(photos).probs
    assert np.allclose(got, want, atol=1e-6)
    assert _cached_graph(int8_run).is_file()


def test_changed_graph_is_refused(int8_run: Path, sample_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(int8_run, run)
    data = bytearray((run / INT8_GRAPH_FILE).read_bytes())
    data[-10] ^= 0xFF
    (run / INT8_GRAPH_FILE).write_bytes(bytes(data))
    _cached_graph(run).unlink()
    with pytest.raises(ArtifactError, match="does not match the record"):
        imagefit.load(run).predict(sorted((sample_data / "val").rglob("*.jpg"))[:1])
    (run / INT8_GRAPH_FILE).unlink()
    with pytest.raises(ArtifactError, match="missing"):
        imagefit.load(run).predict(sorted((sample_data / "val").rglob("*.jpg"))[:1])
