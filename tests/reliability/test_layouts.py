"""Issue 17: the Keras notebooks' folder layouts, read as meant (classes, splits, counts), or refused.

Before: ``validate/`` was ignored (a split was carved from train), a test set
in ``test/test_folder/`` failed the command ("found 1 class folder"), and
``cats-train/``, ``dogs-test/``... were read as 4 classes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from imagefit.config import RunConfig
from imagefit.data.discover import discover
from imagefit.data.prepare import prepare
from imagefit.errors import DataError
from imagefit.inspect import inspect_data

from ._photos import classes, photos


def counts(found_set) -> dict[str, int]:  # type: ignore[no-untyped-def]
    return found_set.counts()


@pytest.mark.parametrize("val_name", ["validate", "Validate", "dev", "valid", "validation", "val"])
def test_train_validate_test(tmp_path: Path, val_name: str) -> None:
    root = tmp_path / "data"
    classes(root / "train", {"cats": 5, "dogs": 4})
    classes(root / val_name, {"cats": 2, "dogs": 3})
    classes(root / "test", {"cats": 1, "dogs": 2})
    found = discover(root)
    assert found.layout == "train/val/test"
    assert counts(found.train) == {"cats": 5, "dogs": 4}
    assert found.val is not None and counts(found.val) == {"cats": 2, "dogs": 3}
    assert found.test is not None and found.test.labeled and counts(found.test) == {"cats": 1, "dogs": 2}
    assert f"validation from {val_name}/" in found.description
    # train uses the folder, not a split of train
    p = prepare(root, None, RunConfig.from_options(model="simple_cnn", seed=0))
    assert len(p.train) == 9 and len(p.val) == 5 and not p.warnings
    rep = inspect_data(root)
    assert set(rep["splits"]) == {"train", "val", "test"}
    assert rep["splits"]["val"]["counts"] == {"cats": 2, "dogs": 3}


@pytest.mark.parametrize("loose", [False, True])
def test_unlabeled_test_folder(tmp_path: Path, loose: bool) -> None:
    """Kaggle's notebook layout: test/test_folder/*.jpg (or loose test/*.jpg) is an unlabeled test set."""
    root = tmp_path / "data"
    classes(root / "train", {"cats": 4, "dogs": 4})
    classes(root / "valid", {"cats": 2, "dogs": 2})
    photos(root / "test" if loose else root / "test" / "test_folder", 7)
    found = discover(root)
    assert found.train.classes == ["cats", "dogs"] and len(found.train) == 8
    assert found.test is not None and not found.test.labeled and len(found.test) == 7
    assert found.test.classes == ["cats", "dogs"]
    assert "test from test/ (unlabeled, 7 files)" in found.description
    rep = inspect_data(root)
    assert rep["splits"]["test"]["n_files"] == 7 and rep["splits"]["test"]["n_readable"] == 7
    p = prepare(root, None, RunConfig.from_options(model="simple_cnn", seed=0))
    assert p.test is not None and len(p.test) == 7 and len(p.val) == 4


def test_labeled_test_folder_with_one_class(tmp_path: Path) -> None:
    root = tmp_path / "data"
    classes(root / "train", {"cats": 3, "dogs": 3})
    classes(root / "test", {"dogs": 4})  # a class of train: labeled, one class
    found = discover(root)
    assert found.test is not None and found.test.labeled and counts(found.test) == {"cats": 0, "dogs": 4}


@pytest.mark.parametrize(
    ("names", "pattern"),
    [
        (("cats-train", "dogs-train", "cats-test", "dogs-test"), "<class>-<split>"),
        (("train-cats", "train-dogs", "test-cats", "test-dogs"), "<split>-<class>"),
        (("cats_train", "dogs_train", "cats_test", "dogs_test"), "<class>_<split>"),
    ],
)
def test_split_in_class_folder_names(tmp_path: Path, names: tuple[str, ...], pattern: str) -> None:
    root = tmp_path / "data"
    sizes = dict(zip(names, (5, 4, 2, 3)))
    for name, n in sizes.items():
        photos(root / name, n)
    found = discover(root)
    assert found.layout == "class-split names"
    assert pattern in found.description
    assert found.train.classes == ["cats", "dogs"]
    assert counts(found.train) == {"cats": 5, "dogs": 4}
    assert found.test is not None and counts(found.test) == {"cats": 2, "dogs": 3}
    assert found.val is None
    rep = inspect_data(root)
    assert rep["classes"] == ["cats", "dogs"] and set(rep["splits"]) == {"train", "test"}
    p = prepare(root, None, RunConfig.from_options(model="simple_cnn", seed=0, val_split=0.25))
    assert sorted(p.train.classes) == ["cats", "dogs"] and len(p.train) + len(p.val) == 9


def test_class_split_names_with_validation(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for name in ("cats-train", "dogs-train", "cats-valid", "dogs-valid"):
        photos(root / name, 3)
    found = discover(root)
    assert found.val is not None and counts(found.val) == {"cats": 3, "dogs": 3}


def test_keras_training_set_test_set(tmp_path: Path) -> None:
    """The Keras course layout: training_set/ and test_set/, each with class folders."""
    root = tmp_path / "data"
    classes(root / "training_set", {"cats": 3, "dogs": 3})
    classes(root / "test_set", {"cats": 2, "dogs": 2})
    found = discover(root)
    assert found.layout == "train/val/test" and found.train.classes == ["cats", "dogs"]
    assert found.test is not None and counts(found.test) == {"cats": 2, "dogs": 2}


@pytest.mark.parametrize(
    ("folders", "message"),
    [
        (("cats-train", "dogs-train", "cats-test", "extra"), "ambiguous layout.*extra"),
        (("train", "val", "validation"), "ambiguous layout: val/ and validation/"),
        (("cats", "dogs", "test"), "ambiguous layout: test/ name a split but there is no train/"),
        (("cats-test", "dogs-test"), "none is a train split"),
        (("cats-train", "dogs-train", "train-test"), "ambiguous layout: train-test"),
        (("cats-train", "cats_train", "dogs-train"), "both class 'cats'"),
    ],
)
def test_ambiguous_layouts_are_errors(tmp_path: Path, folders: tuple[str, ...], message: str) -> None:
    root = tmp_path / "data"
    for name in folders:
        if name in ("train", "val", "validation"):
            classes(root / name, {"cats": 2, "dogs": 2})
        else:
            photos(root / name, 2)
    with pytest.raises(DataError, match=message):
        discover(root)


def test_a_class_name_that_ends_in_a_split_word_stays_a_class(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for name in ("cats", "dogs", "pre-test"):
        photos(root / name, 2)
    found = discover(root)
    assert found.layout == "class folders" and found.train.classes == ["cats", "dogs", "pre-test"]


def test_test_folder_with_unknown_class_folders_is_an_error(tmp_path: Path) -> None:
    root = tmp_path / "data"
    classes(root / "train", {"cats": 2, "dogs": 2})
    photos(root / "test" / "batch1", 2)
    photos(root / "test" / "batch2", 2)
    with pytest.raises(DataError, match="batch1, batch2 are not classes"):
        discover(root)
