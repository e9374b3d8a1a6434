"""Kaggle workflow: kaggle-prep (+ --undo), predict --kaggle, score, and predict --clip."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import log_loss as sk_log_loss

from imagefit.data.discover import discover
from imagefit.errors import DataError, OutputError
from imagefit.kaggle import MANIFEST, kaggle_id, prep, score, submission_rows, undo, write_submission

RED, GREEN = (220, 40, 40), (40, 200, 60)


def make_image(path: Path, color: tuple[int, int, int], seed: int = 0) -> Path:
    """A small noisy image of one colour (as the shared conftest's, kept local: tests/ is not a package)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    arr = np.clip(np.array(color)[None, None, :] + rng.normal(0, 25, (40, 48, 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


@pytest.fixture
def flat(tmp_path: Path) -> Path:
    """A Kaggle-style flat folder: cat.N.png (red) and dog.N.png (green), plus a stray file."""
    d = tmp_path / "train"
    for i in range(4):
        make_image(d / f"cat.{i}.png", RED, seed=i)
        make_image(d / f"dog.{i + 10}.png", GREEN, seed=i)
    (d / "README.txt").write_text("not a photo")
    return d


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_prep_links_into_class_folders_and_undo_reverses_it(flat: Path, capsys) -> None:
    before = _snapshot(flat)
    res = prep(flat)
    out = flat.parent / "train-by-class"
    assert res.out == out and res.method == "symlink" and res.counts == {"cat": 4, "dog": 4}
    assert [p.name for p in res.ignored] == ["README.txt"]
    link = out / "cat" / "cat.0.png"
    assert link.is_symlink() and not os.path.isabs(os.readlink(link))  # relative: the pair can move together
    assert link.resolve() == (flat / "cat.0.png").resolve()
    found = discover(out)
    assert found.layout == "class folders" and found.train.classes == ["cat", "dog"] and len(found.train) == 8
    manifest = json.loads((out / MANIFEST).read_text())
    assert len(manifest["links"]) == 8 and manifest["method"] == "symlink"
    with pytest.raises(OutputError, match="already prepared"):
        prep(flat)
    done = undo(flat)
    assert done.counts == {"cat": 4, "dog": 4}
    assert not out.exists()
    assert _snapshot(flat) == before  # the originals are untouched
    with pytest.raises(OutputError, match="nothing to undo"):
        undo(flat)


def test_prep_falls_back_to_hard_links(flat: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_symlinks(*args: object, **kwargs: object) -> None:
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(os, "symlink", no_symlinks)
    out = tmp_path / "organised"
    res = prep(flat, out)
    assert res.method == "hardlink"
    link = out / "dog" / "dog.10.png"
    assert not link.is_symlink() and os.path.samefile(link, flat / "dog.10.png")
    # A file the user added is kept by --undo, and so is its folder.
    (out / "dog" / "mine.png").write_bytes(b"x")
    done = undo(flat, out)
    assert sum(done.counts.values()) == 8
    assert sorted(p.name for p in (out / "dog").iterdir()) == ["mine.png"]
    assert not (out / "cat").exists() and not (out / MANIFEST).exists()
    assert (flat / "dog.10.png").is_file()


def test_prep_refuses_bad_input(tmp_path: Path, flat: Path) -> None:
    one = tmp_path / "one"
    for i in range(3):
        make_image(one / f"cat.{i}.png", RED, seed=i)
    with pytest.raises(DataError, match="need at least 2"):
        prep(one)
    with pytest.raises(DataError, match="not a folder"):
        prep(tmp_path / "missing")
    # A clash with an existing file: nothing is made.
    out = tmp_path / "o"
    (out / "cat").mkdir(parents=True)
    (out / "cat" / "cat.2.png").write_bytes(b"x")
    with pytest.raises(OutputError, match="already exist"):
        prep(flat, out)
    assert sorted(p.name for p in (out / "cat").iterdir()) == ["cat.2.png"]


def test_kaggle_prep_cli(cli, flat: Path, tmp_path: Path) -> None:
    out = tmp_path / "k"
    code, _, err = cli("kaggle-prep", flat, "--out", out)
    assert code == 0, err
    assert "cat/ 4 photos" in err and "dog/ 4 photos" in err and "nothing copied" in err and "--undo" in err
    code, _, err = cli("kaggle-prep", flat, "--out", out, "--undo")
    assert code == 0 and "removed 8 link(s)" in err and not out.exists()


def test_submission_rows_sorted_by_numeric_id() -> None:
    paths = [Path(f"t/{i}.jpg") for i in (10, 2, 1)]
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]])
    header, rows = submission_rows(paths, probs, ["cat", "dog"], missing=[Path("t/3.jpg")])
    assert header == ["id", "label"]
    assert rows == [[1, 0.5], [2, 0.8], [3, 0.5], [10, 0.1]]
    header, rows = submission_rows(paths, np.array([[0.2, 0.3, 0.5]] * 3), ["a", "b", "c"])
    assert header == ["id", "a", "b", "c"] and rows[0] == [1, 0.2, 0.3, 0.5]
    assert kaggle_id("dir/0042.png") == 42
    with pytest.raises(DataError, match=r"invalid Kaggle test file name 'cat.1.jpg' \(no numeric id\): received 'cat.1'"):
        kaggle_id("cat.1.jpg")
    with pytest.raises(DataError, match="twice"):
        submission_rows([Path("1.jpg"), Path("01.png")], probs[:2], ["cat", "dog"])


def _write(path: Path, rows: list[list[object]], header: tuple[str, ...] = ("id", "label")) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_score_matches_sklearn_and_checks_ids(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 50)
    p = rng.random(50)
    p[0] = 1.0 if y[0] == 0 else 0.0  # a certain mistake: clipped, not infinite
    sub = tmp_path / "sub.csv"
    write_submission(sub, [Path(f"{i + 1}.jpg") for i in range(50)], np.c_[1 - p, p], ["cat", "dog"])
    sol = _write(tmp_path / "sol.csv", [[i + 1, int(v), "Public"] for i, v in enumerate(y)], ("id", "label", "Usage"))
    res = score(sub, sol)
    assert res["n"] == 50
    assert res["log_loss"] == pytest.approx(sk_log_loss(y, np.clip(p, 1e-15, 1 - 1e-15), labels=[0, 1]), rel=1e-6)
    assert res["accuracy"] == pytest.approx(float(np.mean((p > 0.5) == (y == 1))))
    short = _write(tmp_path / "short.csv", [[i + 1, 0.5] for i in range(49)])
    with pytest.raises(DataError, match="1 missing from the submission"):
        score(short, sol)
    with pytest.raises(DataError, match="0 or 1"):
        score(sub, _write(tmp_path / "bad_sol.csv", [[i + 1, 0.3] for i in range(50)]))
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        score(_write(tmp_path / "bad_sub.csv", [[i + 1, 1.5] for i in range(50)]), sol)
    with pytest.raises(DataError, match="columns id,label"):
        score(_write(tmp_path / "cols.csv", [[1, 0.5]], ("image", "p")), sol)
    with pytest.raises(DataError, match=r"invalid label at .*nan_sub\.csv:3: received nan; allowed: a finite number"):
        score(_write(tmp_path / "nan_sub.csv", [[1, 0.5], [2, "nan"]]), sol)


def test_predict_kaggle_then_score_end_to_end(cli, trained_run: Path, sample_data: Path, tmp_path: Path) -> None:
    """The sample's validation photos renamed 1.jpg..24.jpg: the submission scores as evaluate does."""
    test_dir = tmp_path / "test"
    test_dir.mkdir()
    photos = sorted((sample_data / "val" / "cats").iterdir()) + sorted((sample_data / "val" / "dogs").iterdir())
    order = np.random.default_rng(1).permutation(len(photos))
    solution = []
    for new_id, k in enumerate(order, start=1):
        shutil.copyfile(photos[k], test_dir / f"{new_id}.jpg")
        solution.append([new_id, int(photos[k].parent.name == "dogs")])
    sol = _write(tmp_path / "solution.csv", solution)
    sub = tmp_path / "submission.csv"
    code, _, err = cli("predict", trained_run, test_dir, "--kaggle", "--out", sub)
    assert code == 0, err
    assert "label = P(dogs)" in err
    rows = list(csv.reader(sub.open()))
    assert rows[0] == ["id", "label"] and [int(r[0]) for r in rows[1:]] == list(range(1, len(photos) + 1))
    code, out, err = cli("score", sub, sol, "--json")
    assert code == 0, err
    got = json.loads(out)
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert got["n"] == len(photos)
    assert got["accuracy"] == pytest.approx(metrics["accuracy"])
    assert got["log_loss"] == pytest.approx(metrics["log_loss"], abs=1e-4)  # the calibrated model's
    code, out, _ = cli("score", sub, sol)
    assert out.startswith("log loss ") and "accuracy" in out


def test_predict_clip(cli, trained_run: Path, sample_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.csv"
    code, _, err = cli("predict", trained_run, sample_data / "val", "--clip", "0.05", "--out", out)
    assert code == 0, err
    rows = list(csv.DictReader(out.open()))
    probs = np.array([[float(r["prob_cats"]), float(r["prob_dogs"])] for r in rows])
    assert len(rows) == 24 and probs.min() >= 0.05 - 1e-6 and probs.max() <= 0.95 + 1e-6
    assert np.allclose(probs.sum(1), 1, atol=1e-5)
    assert probs.max() == pytest.approx(0.95, abs=1e-6)  # something was clipped
    code, _, err = cli("predict", trained_run, sample_data / "val", "--clip", "0.6", "--out", out)
    assert code == 2 and "received 0.6" in err
