"""``predict`` sharded over torchrun processes (gloo, 2 CPU ranks) against one process: the same bytes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from _procs import run_bounded
from imagefit.predict_dist import Layout, RankPart, chunk, distributed_launch, merge_layout, shard, skip_positions

# What the CLI does under torchrun (see the report to the lead): one error line, from rank 0 only.
LAUNCHER = """
import json, os, sys
import torch.distributed as dist
from imagefit.errors import ImagefitError, ModelError
from imagefit.predict_dist import PeerAbort, predict_distributed

run, jobs, inputs = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3:]
if os.environ.get("FAIL_RANK") == os.environ["RANK"]:
    from imagefit.model import Model

    def broken(self, *args, **kwargs):
        raise ModelError("backbone exploded")

    Model.features = broken
if len(jobs) > 1:
    dist.init_process_group("gloo")  # several predictions in one group: predict_distributed leaves it open
try:
    for out, options in jobs:
        res = predict_distributed(run, inputs, out, **options)
        assert (res is None) == (os.environ["RANK"] != "0")
except PeerAbort as exc:
    sys.exit(exc.exit_code)
except ImagefitError as exc:
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(exc.exit_code)
"""

JOBS = [("csv", {"tta": True, "clip": 0.01}), ("kaggle", {"kaggle": True})]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _torchrun(
    tmp_path: Path, run: Path, jobs: list[tuple[str, dict[str, object]]], inputs: list[Path], **env: str
) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "launch.py"
    script.write_text(LAUNCHER)
    args = ["--nproc-per-node", "2", "--master-addr", "127.0.0.1", "--master-port", str(_free_port())]
    environ = {**os.environ, "OMP_NUM_THREADS": "1", "IMAGEFIT_THREADS": "1", "IMAGEFIT_CACHE": str(tmp_path / "cache-ranks"), **env}
    cmd = [sys.executable, "-m", "torch.distributed.run", *args, str(script), str(run), json.dumps(jobs), *map(str, inputs)]
    return run_bounded(cmd, environ, "torchrun (a hang)", cwd=tmp_path)


@pytest.fixture
def photos(tmp_path: Path, make_img: Callable[..., Path]) -> Path:
    """11 photos with Kaggle-style numeric names (uneven shards: 6 and 5), one of them unreadable."""
    folder = tmp_path / "photos"
    for i in range(1, 11):
        color = (220, 40, 40) if i % 2 else (40, 200, 60)
        make_img(folder / ("sub" if i > 7 else "") / f"{i}.{'png' if i % 3 else 'jpg'}", color, seed=i)
    (folder / "11.jpg").write_bytes(b"broken")
    return folder


# -- sharding and merging without processes -----------------------------------------------------------
def test_shard_merge_restores_the_input_order() -> None:
    files = [Path(f"p{i}.jpg") for i in range(11)]
    unreadable = {3, 4, 10}
    parts, feats = [], []
    for rank in range(3):
        mine = shard(files, rank, 3)
        ok = [j for j, f in enumerate(mine) if files.index(f) not in unreadable]
        skipped = skip_positions(mine, [(str(f), "broken") for f in mine if files.index(f) in unreadable])
        parts.append(RankPart(ok, skipped, 2))
        feats.append(np.array([[[files.index(mine[j]), 0.5]] for j in ok], np.float32))
    layout = merge_layout(parts)
    assert [len(shard(files, r, 3)) for r in range(3)] == [4, 4, 3]
    assert layout.indices.tolist() == [i for i in range(11) if i not in unreadable]
    assert layout.skipped == [("p3.jpg", "broken"), ("p4.jpg", "broken"), ("p10.jpg", "broken")]
    values = np.empty((len(layout.indices), 1, 2), np.float32)
    for r, f in enumerate(feats):
        values[layout.slots[r]] = f
    assert values[:, 0, 0].tolist() == layout.indices.tolist()  # each row holds its own photo's features


def test_merge_of_ranks_without_readable_photos() -> None:
    layout = merge_layout([RankPart([], [(0, "a.jpg", "empty file")], 0), RankPart([], [], 0)])
    assert isinstance(layout, Layout)
    assert layout.indices.tolist() == [] and layout.n_features == 0
    assert layout.skipped == [("a.jpg", "empty file")]


def test_chunks_are_padded_to_one_shape_even_from_a_rank_without_photos() -> None:
    values = np.arange(10, dtype=np.float32).reshape(5, 1, 2)
    assert chunk(values, 4, 3, 1, 2).tolist() == [[[8.0, 9.0]], [[0.0, 0.0]], [[0.0, 0.0]]]
    assert chunk(np.zeros((0, 1, 0), np.float32), 0, 3, 1, 2).shape == (3, 1, 2)


def test_skip_positions_handles_a_file_listed_twice() -> None:
    files = [Path("a.jpg"), Path("b.jpg"), Path("a.jpg")]
    assert skip_positions(files, [("a.jpg", "x"), ("a.jpg", "y")]) == [(0, "a.jpg", "x"), (2, "a.jpg", "y")]
    with pytest.raises(Exception, match="not one of this rank's photos"):
        skip_positions(files, [("c.jpg", "x")])


def test_distributed_launch_reads_world_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert not distributed_launch()
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert not distributed_launch()
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert distributed_launch()


def test_without_torchrun_it_is_predict_files(tmp_path: Path, trained_run: Path, photos: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import imagefit
    from imagefit.predict import predict_files
    from imagefit.predict_dist import predict_distributed

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    res = predict_distributed(trained_run, [photos], tmp_path / "a.csv", clip=0.01)
    assert res is not None and res.rows == 10 and len(res.predictions.skipped) == 1
    predict_files(imagefit.load(trained_run), [photos], tmp_path / "b.csv", clip=0.01)
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


def test_rank_0_refuses_an_unknown_option_before_reading_photos(tmp_path: Path, photos: Path) -> None:
    from imagefit.errors import ConfigError
    from imagefit.predict_dist import _prepare

    with pytest.raises(ConfigError, match="bogus"):
        _prepare(tmp_path / "no-run", [photos], tmp_path / "p.csv", {"bogus": 1}, True)


# -- two gloo processes -------------------------------------------------------------------------------
def test_two_ranks_write_the_single_process_csv(tmp_path: Path, trained_run: Path, photos: Path) -> None:
    import imagefit
    from imagefit.predict import predict_files

    model = imagefit.load(trained_run)
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    for name, options in JOBS:
        predict_files(model, [photos], tmp_path / "one" / f"{name}.csv", **options)  # type: ignore[arg-type]
    jobs = [(str(tmp_path / "two" / f"{name}.csv"), options) for name, options in JOBS]
    done = _torchrun(tmp_path, trained_run, jobs, [photos])
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["csv.csv", "kaggle.csv"]  # no temporary or per-rank files
    for name, _ in JOBS:
        assert (tmp_path / "two" / f"{name}.csv").read_bytes() == (tmp_path / "one" / f"{name}.csv").read_bytes(), name
    rows = (tmp_path / "two" / "csv.csv").read_text().splitlines()
    assert len(rows) == 12 and rows[-1].startswith(str(photos / "11.jpg"))  # the unreadable photo keeps its error row


def test_an_error_on_rank_1_stops_both_with_one_line(tmp_path: Path, trained_run: Path, photos: Path) -> None:
    out = tmp_path / "preds.csv"
    done = _torchrun(tmp_path, trained_run, [(str(out), {})], [photos], FAIL_RANK="1")
    assert done.returncode != 0
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("error:")]
    assert lines == ["error: rank 1: backbone exploded"], done.stderr[-3000:]
    assert not out.exists()
