"""Issue 17: links, run folders, hidden folders and copies never change what a data folder holds.

Before: a loop ``cats/loop -> ..`` made 80 photos into 3,281 items (dog photos
labelled cats, the same photo in train and val) with exit 0; an ``--out``
folder inside the data became a class on the next train; the same photo in
train and val went unnoticed.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from imagefit.config import RunConfig
from imagefit.data.discover import discover, list_images
from imagefit.data.duplicates import find_duplicates
from imagefit.data.prepare import out_inside_data, prepare, prepare_data

from ._photos import classes, photos

pytestmark = pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symbolic links")


def _labels(found) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {p.name: found.train.classes[y] for p, y in zip(found.train.paths, found.train.labels)}


def test_symlink_loop_is_read_once(tmp_path: Path) -> None:
    root = classes(tmp_path / "data", {"cats": 40, "dogs": 40})
    (root / "cats" / "loop").symlink_to("..")
    found = discover(root)
    assert len(found.train) == 80
    assert found.train.counts() == {"cats": 40, "dogs": 40}
    assert all(label == name.split(".")[0] for name, label in _labels(found).items())  # no dog labelled cat
    assert [(p, r) for p, r in found.skipped.items if p.endswith("loop")]
    assert "link" in dict(found.skipped.items)[str(root / "cats" / "loop")]


def test_symlink_loop_gives_no_leak_between_train_and_val(tmp_path: Path) -> None:
    root = classes(tmp_path / "data", {"cats": 10, "dogs": 10})
    (root / "cats" / "loop").symlink_to("..")
    config = RunConfig.from_options(model="simple_cnn", seed=0)
    p = prepare(root, None, config)
    assert len(p.train) + len(p.val) == 20
    assert not set(map(os.path.realpath, p.train.paths)) & set(map(os.path.realpath, p.val.paths))
    assert p.duplicates is not None and not p.duplicates
    assert any("left out 1 entry" in w and "loop" in w for w in p.warnings)


def test_link_to_another_class_folder_is_not_followed(tmp_path: Path) -> None:
    root = classes(tmp_path / "data", {"cats": 3, "dogs": 3})
    (root / "cats" / "more").symlink_to(root / "dogs", target_is_directory=True)
    (root / "cats" / "dog.0.jpg").symlink_to(root / "dogs" / "dogs.0.jpg")  # a file link into another class
    found = discover(root)
    assert found.train.counts() == {"cats": 3, "dogs": 3}
    reasons = dict(found.skipped.items)
    assert "reads at its own place" in reasons[str(root / "cats" / "more")]
    assert "reads at its own place" in reasons[str(root / "cats" / "dog.0.jpg")]


def test_outside_folder_linked_twice_is_read_once(tmp_path: Path) -> None:
    extra = photos(tmp_path / "elsewhere", 3)
    root = classes(tmp_path / "data", {"cats": 2, "dogs": 2})
    (root / "cats" / "a").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (root / "cats" / "b").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (root / "cats" / "c.jpg").symlink_to(extra[0])  # the same file once more, by a file link
    found = discover(root)
    assert found.train.counts() == {"cats": 5, "dogs": 2}
    reasons = dict(found.skipped.items)
    assert "already read" in reasons[str(root / "cats" / "b")]
    # c.jpg is met first (files before folders); the copy reached through a/ is the one left out
    assert "same file as" in reasons[str(root / "cats" / "a" / extra[0].name)]


def test_hard_link_counted_once(tmp_path: Path) -> None:
    root = classes(tmp_path / "data", {"cats": 2, "dogs": 2})
    os.link(root / "cats" / "cats.0.jpg", root / "cats" / "copy.jpg")
    assert discover(root).train.counts() == {"cats": 2, "dogs": 2}


def test_list_images_follows_a_loop_once(tmp_path: Path) -> None:
    photos(tmp_path / "p", 4)
    (tmp_path / "p" / "loop").symlink_to("..")
    assert len(list_images([tmp_path / "p"])) == 4


def test_run_folder_and_hidden_folder_are_never_photos(tmp_path: Path) -> None:
    root = classes(tmp_path / "data", {"cats": 3, "dogs": 3})
    run = root / "run1"  # `imagefit train data --out data/run1`: its report PNGs are not a class
    photos(run, 2)
    (run / "imagefit.json").write_text("{}")
    nested = root / "cats" / "old-run"
    photos(nested, 2)
    (nested / "imagefit.json").write_text("{}")
    runs = root / "runs" / "r2"  # --out data/runs/r2: "runs" only holds a run folder
    photos(runs, 2)
    (runs / "imagefit.json").write_text("{}")
    photos(root / ".cache", 2)
    photos(root / "dogs" / ".ipynb_checkpoints", 2)
    found = discover(root)
    assert found.train.classes == ["cats", "dogs"]
    assert found.train.counts() == {"cats": 3, "dogs": 3}
    reasons = dict(found.skipped.items)
    assert "run folder" in reasons[str(run)] and "run folder" in reasons[str(nested)]
    assert "only run folders" in reasons[str(root / "runs")]
    assert len(list_images([root])) == 6


def test_out_inside_data_warns(tmp_path: Path) -> None:
    root = classes(tmp_path / "data", {"cats": 3, "dogs": 3})
    assert out_inside_data(root / "runs" / "x", root) is not None
    assert out_inside_data(tmp_path / "runs" / "x", root) is None
    assert out_inside_data(None, root) is None
    config = RunConfig.from_options(model="simple_cnn", seed=0)
    got: list[str] = []
    prepare_data(root, None, config, out=root / "run1", warn=got.append)
    assert any("inside the data folder" in m for m in got)


def test_same_photo_in_train_and_val_is_reported(tmp_path: Path) -> None:
    root = tmp_path / "data"
    train = classes(root / "train", {"cats": 4, "dogs": 4})
    classes(root / "valid", {"cats": 2, "dogs": 2})
    shutil.copy(train / "cats" / "cats.0.jpg", root / "valid" / "cats" / "copy-a.jpg")
    shutil.copy(train / "dogs" / "dogs.1.jpg", root / "valid" / "dogs" / "copy-b.jpg")
    photos(root / "test" / "unlabeled", 2)
    shutil.copy(train / "dogs" / "dogs.2.jpg", root / "test" / "unlabeled" / "copy-c.jpg")
    p = prepare(root, None, RunConfig.from_options(model="simple_cnn", seed=0))
    assert p.duplicates is not None
    assert p.duplicates.counts() == {"train/val": 2, "train/test": 1}
    assert any(w.startswith("your validation accuracy is optimistic: 2 val photo(s)") for w in p.warnings)
    assert ("train/val", 2) in p.duplicates.counts().items()
    listed = p.duplicates.as_dict()["train/val"]
    assert {Path(d["second"]).name for d in listed} == {"copy-a.jpg", "copy-b.jpg"}


def test_find_duplicates_counts_per_split_pair(tmp_path: Path) -> None:
    a = photos(tmp_path / "a", 3)
    b = photos(tmp_path / "b", 2)
    shutil.copy(a[0], tmp_path / "b" / "x.jpg")
    shutil.copy(b[0], tmp_path / "c.jpg")
    dup = find_duplicates({"train": a, "val": [*b, tmp_path / "b" / "x.jpg"], "test": [tmp_path / "c.jpg", a[1]]})
    assert dup.counts() == {"train/val": 1, "train/test": 1, "val/test": 1}
    assert not find_duplicates({"train": a, "val": b})
