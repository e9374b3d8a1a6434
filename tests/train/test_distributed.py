"""torchrun data-parallel training on CPU (gloo, 2 processes) against a single process."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from _procs import run_bounded
from imagefit.errors import ConfigError
from imagefit.train.distributed import DistInfo, per_rank_batch, sum_across


def _history(run: Path) -> list[dict[str, str]]:
    with (run / "history.csv").open() as fh:
        return list(csv.DictReader(fh))


def _train(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_bounded(args, env, "training")


def test_per_rank_batch_splits_evenly() -> None:
    assert per_rank_batch(32, DistInfo(0, 2, 0)) == 16
    with pytest.raises(ConfigError, match="multiple of the number of processes"):
        per_rank_batch(9, DistInfo(0, 2, 0))


def test_sum_across_is_identity_without_a_group() -> None:
    assert sum_across([1.0, 2.0], DistInfo(), torch.device("cpu")) == [1.0, 2.0]


def test_torchrun_two_cpu_processes_match_one(tmp_path: Path, sample_data: Path) -> None:
    """Same global batch, same seed: 2 gloo ranks track the single-process run and only rank 0 writes."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "IMAGEFIT_CACHE": str(tmp_path / "cache")}
    common = [
        sample_data / "train",
        "--val",
        sample_data / "val",
        "--model",
        "simple_cnn",
        "--strategy",
        "full",
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--seed",
        "0",
        "--lr",
        "0.001",
    ]
    common = [str(c) for c in common]
    single = _train([sys.executable, "-m", "imagefit", "train", *common, "--out", str(tmp_path / "one")], env)
    assert single.returncode == 0, single.stderr[-2000:]
    ddp = _train(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            "2",
            "--master-port",
            "29531",
            "-m",
            "imagefit",
            "train",
            *common,
            "--out",
            str(tmp_path / "two"),
        ],
        env,
    )
    assert ddp.returncode == 0, ddp.stderr[-2000:]
    h1, h2 = _history(tmp_path / "one"), _history(tmp_path / "two")
    assert len(h1) == len(h2) == 2
    for a, b in zip(h1, h2):
        # Per-rank BatchNorm statistics and dropout masks differ from one process's, nothing else.
        assert abs(float(a["loss"]) - float(b["loss"])) < 0.05
        assert abs(float(a["val_loss"]) - float(b["val_loss"])) < 0.05
    meta = json.loads((tmp_path / "two" / "imagefit.json").read_text())
    assert meta["classes"] == ["cats", "dogs"]
    # Rank 1 printed nothing of its own: one "run folder" line in the combined output.
    assert (ddp.stdout + ddp.stderr).count("run folder:") == 1
