"""Continuing a finished run for N more epochs, and the warnings a run prints (captured output)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

import imagefit

RED, GREEN = (220, 40, 40), (40, 200, 60)


@pytest.fixture
def data(tmp_path: Path, make_img) -> Path:  # type: ignore[no-untyped-def]
    root = tmp_path / "data"
    for name, color in (("red", RED), ("green", GREEN)):
        for i in range(6):
            make_img(root / name / f"{name}_{i}.png", color, seed=900 + i + (50 if name == "red" else 0))
    return root


def _history(run: Path) -> list[dict[str, str]]:
    with open(run / "history.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_resume_finished_run_with_epochs_continues_and_records(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    imagefit.train(data, out=out, model="simple_cnn", pretrained=False, epochs=3, patience=50, progress=False)
    assert [r["epoch"] for r in _history(out)] == ["0", "1", "2"]
    run = imagefit.train(None, out=out, resume=True, epochs=4, progress=False)  # type: ignore[arg-type]
    rows = _history(out)
    assert [r["epoch"] for r in rows] == [str(e) for e in range(7)] and {r["phase"] for r in rows} == {"head"}
    assert len(run.history) == 7
    record = json.loads((out / "imagefit.json").read_text())
    assert record["settings"]["head"]["epochs"] == 7  # the epochs actually run, 3 + 4
    assert imagefit.load(out).evaluate(data)["accuracy"] >= 0.5  # the rewritten folder is a loadable run


def test_warnings_are_printed_before_work(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    imagefit.train(data, out=tmp_path / "run", model="simple_cnn", pretrained=False, epochs=1, augment="heavy", progress=True)
    err = capsys.readouterr().err
    lines = err.splitlines()
    first_epoch = next(i for i, line in enumerate(lines) if line.lstrip().startswith("epoch"))
    warn_random = next(i for i, line in enumerate(lines) if "random filters" in line)
    warn_heavy = next(i for i, line in enumerate(lines) if "only horizontal flips" in line)
    assert warn_random < first_epoch and warn_heavy < first_epoch
    assert "--strategy full" in lines[warn_random]


@pytest.mark.parametrize(("accuracy", "warned"), [(0.75, True), (0.70, True), (0.80, False)])
def test_no_better_than_majority_is_said(accuracy: float, warned: bool) -> None:
    from types import SimpleNamespace

    import numpy as np

    from imagefit.train.finish import Calibrated, warn_if_baseline

    said: list[str] = []
    ctx = SimpleNamespace(
        val_set=SimpleNamespace(labels=[0, 0, 0, 1]), train_set=SimpleNamespace(classes=["a", "b"]), ui=SimpleNamespace(warn=said.append)
    )
    warn_if_baseline(ctx, Calibrated(1.0, np.zeros(1), np.zeros(1), {"accuracy": accuracy}))  # type: ignore[arg-type]
    assert bool(said) is warned
    if warned:
        assert "no better than always answering the most common class (0.7500)" in said[0]


def test_val_split_0_refits_on_all_photos_for_the_best_epoch_count(data: Path, tmp_path: Path) -> None:
    run = imagefit.train(data, out=tmp_path / "run", model="simple_cnn", pretrained=False, epochs=6, val_split=0, progress=False)
    rows = _history(run.path)
    head = [r for r in rows if r["phase"] == "head"]
    refit = [r for r in rows if r["phase"] == "refit"]
    best = min(range(len(head)), key=lambda i: float(head[i]["val_loss"]))
    assert len(refit) == best + 1 and all(r["val_loss"] == "" for r in refit)
    record = json.loads((run.path / "imagefit.json").read_text())
    assert record["settings"]["final_fit"]["epochs"] == best + 1 and record["settings"]["final_fit"]["photos"] == 12
    assert "first fit" in record["settings"]["final_fit"]["metrics"]
    assert record["metrics"]["val"]["accuracy"] == run.metrics["accuracy"]  # the first fit's validation metrics
    assert imagefit.load(run.path).predict([data / "red" / "red_0.png"]).records[0]["label"] in ("red", "green")


def test_val_split_0_with_finetune_is_refused_before_work(data: Path, tmp_path: Path) -> None:
    from imagefit.errors import ConfigError

    with pytest.raises(ConfigError, match="val_split 0"):
        imagefit.train(data, out=tmp_path / "run", strategy="finetune", val_split=0, progress=False)
    assert not (tmp_path / "run").exists()
