"""``imagefit interpret``: top losses, confused pairs, and likely-mislabeled training photos."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from imagefit.errors import ArtifactError, ConfigError
from imagefit.interpret import confused_pairs, find_suspects, interpret, out_of_fold_probs, top_losses
from imagefit.model import Evaluation


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_top_losses_are_the_most_confidently_wrong() -> None:
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.01, 0.99]])
    ev = Evaluation({}, [Path(f"{i}.jpg") for i in range(4)], np.array([0, 0, 0, 1]), probs, probs)
    rows = top_losses(ev, ["cat", "dog"], k=3)
    assert [r["path"] for r in rows] == ["1.jpg", "2.jpg", "0.jpg"]
    assert rows[0]["wrong"] and rows[0]["predicted"] == "dog" and rows[0]["loss"] == pytest.approx(-np.log(0.2))
    assert not rows[1]["wrong"]


def test_confused_pairs_sorted_by_count() -> None:
    cm = [[5, 1, 3], [0, 4, 0], [2, 0, 6]]
    pairs = confused_pairs(cm, ["a", "b", "c"])
    assert [(p["label"], p["predicted"], p["count"]) for p in pairs] == [("a", "c", 3), ("c", "a", 2), ("a", "b", 1)]
    assert pairs[0]["share_of_label"] == pytest.approx(3 / 9)
    assert confused_pairs([[3, 0], [0, 3]], ["a", "b"]) == []


def test_out_of_fold_flags_a_flipped_label() -> None:
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 30)
    centers = rng.normal(0, 4, (3, 16))
    x = centers[y] + rng.normal(0, 1, (90, 16))
    given = y.copy()
    given[[3, 40]] = [1, 2]  # two wrong labels
    oof, k = out_of_fold_probs(x, given, 3, folds=5)
    assert k == 5 and np.allclose(oof.sum(1), 1)
    sus = find_suspects([Path(f"{i}.png") for i in range(90)], given, oof, ["a", "b", "c"])
    assert {s["path"] for s in sus} == {"3.png", "40.png"}
    assert {s["suggested"] for s in sus} == {"a", "b"}
    # Too few photos per class: no folds, nothing flagged, no crash.
    oof2, k2 = out_of_fold_probs(x[:4], np.array([0, 0, 0, 1]), 2)
    assert k2 == 0 and np.isnan(oof2).all()
    assert find_suspects([Path("x")] * 4, np.array([0, 0, 0, 1]), oof2, ["a", "b"]) == []


@pytest.fixture
def mislabeled_copy(sample_data: Path, tmp_path: Path) -> tuple[Path, list[str]]:
    """The sample's training photos with two cats filed under dogs."""
    dest = tmp_path / "train"
    shutil.copytree(sample_data / "train", dest)
    moved = []
    for name in ("cat.3.jpg", "cat.17.jpg"):
        shutil.move(dest / "cats" / name, dest / "dogs" / name)
        moved.append(str(dest / "dogs" / name))
    return dest, moved


def test_interpret_finds_planted_mislabels(
    trained_run: Path, sample_data: Path, mislabeled_copy: tuple[Path, list[str]], tmp_path: Path
) -> None:
    data, moved = mislabeled_copy
    res = interpret(trained_run, data, val=sample_data / "val", out=tmp_path / "interp", top=8)
    flagged = {s["path"] for s in res.suspects}
    assert set(moved) <= flagged, res.suspects
    assert all(s["suggested"] == "cats" for s in res.suspects if s["path"] in moved)
    assert len(flagged) <= 6  # a handful to check by eye, not the whole folder
    assert res.oof["folds"] == 5 and res.oof["n_train"] == 80
    out = tmp_path / "interp"
    assert {r["path"] for r in _rows(out / "suspected_mislabels.csv")} == flagged
    losses = _rows(out / "top_losses.csv")
    assert len(losses) == 8
    assert [float(r["loss"]) for r in losses] == sorted((float(r["loss"]) for r in losses), reverse=True)
    assert len(_rows(out / "train_oof.csv")) == 80
    assert _rows(out / "confused_pairs.csv") == [] or "count" in _rows(out / "confused_pairs.csv")[0]
    html = (out / "report.html").read_text(encoding="utf-8")
    assert html.count("data:image/png;base64,") >= 2
    assert "Likely mislabeled training photos" in html and "cat.3.jpg" in html
    assert (out / "top_losses.png").is_file() and (out / "suspected_mislabels.png").is_file()


def test_interpret_cli_defaults_to_the_runs_own_data(cli, trained_run: Path) -> None:
    code, _, text = cli("interpret", trained_run, "--top", "4")
    assert code == 0, text
    assert "top 4 losses" in text and "flagged as likely mislabeled" in text
    folders = sorted(trained_run.glob("interpret-*"))
    assert folders and (folders[-1] / "report.html").is_file()
    for f in folders:  # the run folder is shared by the session's tests
        shutil.rmtree(f)


def test_interpret_rejects_bad_options(trained_run: Path) -> None:
    with pytest.raises(ConfigError, match="received"):
        interpret(trained_run, top=0)
    with pytest.raises(ConfigError, match="received"):
        interpret(trained_run, low=1.5)
    meta = json.loads((trained_run / "imagefit.json").read_text())
    assert meta["data"]["train"]  # the default data comes from here


def _copy_without(trained_run: Path, tmp_path: Path, key: str) -> Path:
    run = tmp_path / "run"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("interpret-*"))
    meta = json.loads((run / "imagefit.json").read_text())
    del meta[key]
    (run / "imagefit.json").write_text(json.dumps(meta))
    return run


def test_interpret_needs_the_runs_settings(trained_run: Path, tmp_path: Path) -> None:
    # Without its config the run's validation split cannot be rebuilt: a clear error, not a KeyError.
    with pytest.raises(ArtifactError, match="does not record its settings"):
        interpret(_copy_without(trained_run, tmp_path, "config"))


def test_interpret_without_recorded_data_asks_for_it(trained_run: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not record its data; pass DATA"):
        interpret(_copy_without(trained_run, tmp_path, "data"))
