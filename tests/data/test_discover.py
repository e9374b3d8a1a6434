"""discover(): every supported data layout, on tiny generated images."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagefit.data.discover import ImageSet, discover, list_files, list_images
from imagefit.errors import DataError

RED, GREEN, BLUE = (220, 40, 40), (40, 200, 60), (40, 60, 220)


def _names(s: ImageSet) -> list[str]:
    return [p.name for p in s.paths]


# -- class folders ---------------------------------------------------------------
def test_class_folders(image_folder) -> None:
    root = image_folder(n_per_class=3, classes=("red", "green", "blue"))
    found = discover(root)
    assert found.layout == "class folders"
    assert found.val is None and found.test is None
    assert found.train.classes == ["blue", "green", "red"]  # sorted folder names
    assert found.train.counts() == {"blue": 3, "green": 3, "red": 3}
    assert found.train.labeled
    for p, y in zip(found.train.paths, found.train.labels):
        assert p.parent.name == found.train.classes[y]


def test_class_folders_recursive_and_hidden_files_ignored(image_folder, make_img) -> None:
    root = image_folder(n_per_class=2)
    make_img(root / "red" / "nested" / "deep.png", RED)
    (root / "red" / ".DS_Store").write_bytes(b"junk")
    (root / "green" / "Thumbs.db").write_bytes(b"junk")
    (root / ".hidden").mkdir()
    make_img(root / ".hidden" / "x.png", BLUE)
    found = discover(root)
    assert found.train.classes == ["green", "red"]
    assert found.train.counts() == {"green": 2, "red": 3}
    assert "deep.png" in _names(found.train)
    assert ".DS_Store" not in _names(found.train)


def test_empty_class_folder_is_an_error(image_folder) -> None:
    root = image_folder(n_per_class=2)
    (root / "blue").mkdir()
    with pytest.raises(DataError, match="'blue'.*empty"):
        discover(root)


def test_one_class_folder_is_an_error(image_folder) -> None:
    root = image_folder(n_per_class=2, classes=("red",))
    with pytest.raises(DataError, match="at least 2 classes"):
        discover(root)


def test_missing_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        discover(tmp_path / "nope")


def test_empty_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no images found"):
        discover(tmp_path)


def test_plain_file_is_an_error(tmp_path: Path) -> None:
    f = tmp_path / "notes.txt"
    f.write_text("hello")
    with pytest.raises(DataError, match="expected a folder or a .csv"):
        discover(f)


# -- train/ + val|valid|validation/ + test/ ---------------------------------------
@pytest.mark.parametrize("val_name", ["val", "valid", "validation", "Validation"])
def test_train_val_layout(tmp_path: Path, image_folder, val_name: str) -> None:
    image_folder(n_per_class=3, root=tmp_path / "d" / "train")
    image_folder(n_per_class=2, root=tmp_path / "d" / val_name)
    found = discover(tmp_path / "d")
    assert found.layout == "train/val/test"
    assert found.train.counts() == {"green": 3, "red": 3}
    assert found.val is not None
    assert found.val.counts() == {"green": 2, "red": 2}
    assert found.val.classes == found.train.classes
    assert found.test is None


def test_train_val_test_layout_labeled_test(tmp_path: Path, image_folder) -> None:
    for split, n in (("train", 3), ("valid", 2), ("test", 2)):
        image_folder(n_per_class=n, root=tmp_path / "d" / split)
    found = discover(tmp_path / "d")
    assert found.test is not None and found.test.labeled
    assert found.test.counts() == {"green": 2, "red": 2}


def test_unlabeled_flat_test_folder(tmp_path: Path, image_folder, make_img) -> None:
    image_folder(n_per_class=3, root=tmp_path / "d" / "train")
    for i in range(4):
        make_img(tmp_path / "d" / "test" / f"{i}.jpg", RED, seed=i)
    (tmp_path / "d" / "test" / "readme.txt").write_text("not an image")
    found = discover(tmp_path / "d")
    assert found.val is None
    assert found.test is not None
    assert not found.test.labeled and found.test.labels == []
    assert sorted(_names(found.test)) == ["0.jpg", "1.jpg", "2.jpg", "3.jpg"]
    assert found.test.classes == found.train.classes


def test_val_with_subset_of_classes_is_reindexed(tmp_path: Path, image_folder) -> None:
    image_folder(n_per_class=2, classes=("red", "green", "blue"), root=tmp_path / "d" / "train")
    image_folder(n_per_class=2, classes=("red", "green"), root=tmp_path / "d" / "val")
    # discover() insists on 2+ classes, so the val folder has exactly train's red and green.
    found = discover(tmp_path / "d")
    assert found.val is not None
    assert found.val.classes == ["blue", "green", "red"]
    for p, y in zip(found.val.paths, found.val.labels):
        assert found.val.classes[y] == p.parent.name


def test_val_with_unknown_class_is_an_error(tmp_path: Path, image_folder) -> None:
    image_folder(n_per_class=2, classes=("red", "green"), root=tmp_path / "d" / "train")
    image_folder(n_per_class=2, classes=("red", "blue"), root=tmp_path / "d" / "val")
    with pytest.raises(DataError, match="blue"):
        discover(tmp_path / "d")


# -- flat Kaggle names ----------------------------------------------------------------
def _kaggle(folder: Path, make_img, n: int = 3, ext: str = ".jpg") -> Path:
    for i in range(n):
        make_img(folder / f"cat.{i}{ext}", RED, seed=i)
        make_img(folder / f"dog.{i}{ext}", GREEN, seed=i)
    return folder


def test_kaggle_names_detected(tmp_path: Path, make_img) -> None:
    root = _kaggle(tmp_path / "flat", make_img)
    found = discover(root)
    assert found.layout == "labels from file names"
    assert found.train.classes == ["cat", "dog"]
    assert found.train.counts() == {"cat": 3, "dog": 3}
    for p, y in zip(found.train.paths, found.train.labels):
        assert p.name.startswith(found.train.classes[y])


def test_kaggle_style_variants(tmp_path: Path, make_img) -> None:
    root = tmp_path / "flat"
    make_img(root / "Abyssinian_1.jpg", RED)
    make_img(root / "Abyssinian_2.jpg", RED, seed=1)
    make_img(root / "beagle-10.png", GREEN)
    make_img(root / "beagle-11.png", GREEN, seed=1)
    # Issue 17: only Kaggle's <label>.<number>.<ext> is read without being asked; these names need the flag.
    with pytest.raises(DataError, match="no labels"):
        discover(root)
    found = discover(root, labels_from_filename=True)
    assert found.train.classes == ["abyssinian", "beagle"]  # labels are lower-cased
    assert found.train.counts() == {"abyssinian": 2, "beagle": 2}


def test_unlabeled_names_not_detected(tmp_path: Path, make_img) -> None:
    root = _kaggle(tmp_path / "flat", make_img)
    make_img(root / "holiday.jpg", BLUE)  # one name without a label: detection refuses
    with pytest.raises(DataError, match="no labels"):
        discover(root)


def test_labels_from_filename_forced(tmp_path: Path, make_img) -> None:
    root = _kaggle(tmp_path / "flat", make_img)
    make_img(root / "holiday.jpg", BLUE)
    found = discover(root, labels_from_filename=True)
    assert found.train.classes == ["cat", "dog"]
    assert "holiday.jpg" not in _names(found.train)  # no label in its name: left out
    assert len(found.train) == 6


def test_labels_from_filename_forced_over_subfolders(tmp_path: Path, make_img) -> None:
    # Forcing file-name labels ignores folder names (and train/ detection).
    _kaggle(tmp_path / "d" / "train", make_img, n=2)
    _kaggle(tmp_path / "d" / "misc", make_img, n=1)
    found = discover(tmp_path / "d", labels_from_filename=True)
    assert found.layout == "labels from file names"
    assert found.train.counts() == {"cat": 3, "dog": 3}


def test_labels_from_filename_forced_needs_two_labels(tmp_path: Path, make_img) -> None:
    root = tmp_path / "flat"
    for i in range(3):
        make_img(root / f"cat.{i}.jpg", RED, seed=i)
    with pytest.raises(DataError, match="need at least 2"):
        discover(root, labels_from_filename=True)


# -- CSV ------------------------------------------------------------------------------
def test_csv_relative_and_absolute_paths(tmp_path: Path, make_img) -> None:
    imgs = tmp_path / "imgs"
    a = make_img(imgs / "a.png", RED)
    b = make_img(imgs / "b.png", GREEN)
    c = make_img(imgs / "sub" / "c.png", RED, seed=2)
    other = make_img(tmp_path / "elsewhere" / "d.png", GREEN, seed=3)
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text(
        "Path,Label\n"
        f"imgs/{a.name},red\n"
        f"imgs/{b.name},green\n"
        "imgs/sub/c.png,red\n"
        f"{other},green\n"
        ",red\n"  # no path: dropped
        "imgs/x.png,\n",  # no label: dropped
        encoding="utf-8",
    )
    found = discover(csv_path)
    assert found.layout == "csv"
    s = found.train
    assert s.classes == ["green", "red"]
    assert s.paths == [a, b, c, other]  # relative to the CSV's folder; absolute kept
    assert [s.classes[y] for y in s.labels] == ["red", "green", "red", "green"]
    assert all(p.is_file() for p in s.paths)


@pytest.mark.parametrize(("pcol", "lcol"), [("filename", "class"), ("image", "target"), ("file", "category")])
def test_csv_column_aliases(tmp_path: Path, make_img, pcol: str, lcol: str) -> None:
    make_img(tmp_path / "a.png", RED)
    make_img(tmp_path / "b.png", GREEN)
    (tmp_path / "l.csv").write_text(f"{pcol},{lcol}\na.png,x\nb.png,y\n", encoding="utf-8")
    assert discover(tmp_path / "l.csv").train.counts() == {"x": 1, "y": 1}


def test_csv_with_bom(tmp_path: Path, make_img) -> None:
    make_img(tmp_path / "a.png", RED)
    make_img(tmp_path / "b.png", GREEN)
    (tmp_path / "l.csv").write_bytes("\ufeffpath,label\na.png,x\nb.png,y\n".encode())
    assert len(discover(tmp_path / "l.csv").train) == 2


def test_csv_missing_columns(tmp_path: Path) -> None:
    (tmp_path / "l.csv").write_text("name,colour\na.png,red\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"received columns \['name', 'colour'\]"):
        discover(tmp_path / "l.csv")


def test_csv_one_label(tmp_path: Path) -> None:
    (tmp_path / "l.csv").write_text("path,label\na.png,red\nb.png,red\n", encoding="utf-8")
    with pytest.raises(DataError, match="1 label"):
        discover(tmp_path / "l.csv")


def test_csv_no_rows(tmp_path: Path) -> None:
    (tmp_path / "l.csv").write_text("path,label\n", encoding="utf-8")
    with pytest.raises(DataError, match="no rows"):
        discover(tmp_path / "l.csv")


def test_csv_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "l.csv").write_bytes(b"path,label\n\xff\xfe\xfa.png,red\n")
    with pytest.raises(DataError, match="UTF-8"):
        discover(tmp_path / "l.csv")


# -- ImageSet helpers and listing ------------------------------------------------------
def test_imageset_subset_and_with_classes() -> None:
    s = ImageSet([Path("a"), Path("b"), Path("c")], [0, 1, 1], ["x", "y"], "src")
    sub = s.subset([2, 0])
    assert sub.paths == [Path("c"), Path("a")] and sub.labels == [1, 0] and sub.classes == ["x", "y"]
    re = s.with_classes(["w", "y", "x"])
    assert re.classes == ["w", "y", "x"] and re.labels == [2, 1, 1]
    with pytest.raises(DataError, match=r"\['x'\]"):
        s.with_classes(["y", "z"])
    assert not ImageSet([], [], ["x", "y"]).labeled


def test_list_images_and_list_files(tmp_path: Path, make_img) -> None:
    make_img(tmp_path / "f" / "b.png", RED)
    make_img(tmp_path / "f" / "sub" / "a.JPG", RED, fmt="JPEG")
    (tmp_path / "f" / "notes.txt").write_text("x")
    direct = tmp_path / "direct.dat"
    direct.write_bytes(b"whatever")
    got = list_images([tmp_path / "f", direct])
    assert [p.name for p in got] == ["b.png", "a.JPG", "direct.dat"]  # named files kept whatever their extension
    assert [p.name for p in list_files(tmp_path / "f")] == ["b.png", "notes.txt", "a.JPG"]
    with pytest.raises(DataError, match="not found"):
        list_images([tmp_path / "missing.jpg"])
