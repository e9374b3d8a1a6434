"""Issue 17: CSV and file-name labels read exactly as written, or refused with the line at fault.

Before: a header ``path, label`` crashed with a KeyError; a short row made a
class named ``None``; rows with an empty label vanished silently; one path
with two labels was accepted; ``cat.0.2.jpg`` gave classes ``cat.0``..``cat.10``
and camera names ``IMG_1000.jpg`` became classes without being asked.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from imagefit.data.discover import discover
from imagefit.errors import ConfigError, DataError

from ._photos import photos


@pytest.fixture
def imgs(tmp_path: Path) -> Path:
    photos(tmp_path / "imgs", 4)  # imgs.0.jpg .. imgs.3.jpg
    return tmp_path


def _csv(folder: Path, text: str) -> Path:
    p = folder / "labels.csv"
    p.write_text(text, encoding="utf-8")
    return p


def test_header_with_spaces(imgs: Path) -> None:
    found = discover(_csv(imgs, "path, label\nimgs/imgs.0.jpg, cat\nimgs/imgs.1.jpg, dog\n"))
    assert found.train.counts() == {"cat": 1, "dog": 1}
    assert [p.name for p in found.train.paths] == ["imgs.0.jpg", "imgs.1.jpg"]


def test_row_without_label_field_is_refused_with_its_line(imgs: Path) -> None:
    with pytest.raises(DataError, match="line 3: no label field"):
        discover(_csv(imgs, "path,label\nimgs/imgs.0.jpg,cat\nimgs/imgs.1.jpg\nimgs/imgs.2.jpg,dog\n"))


def test_row_with_an_unquoted_comma_is_refused(imgs: Path) -> None:
    with pytest.raises(DataError, match="line 2: more fields than the header"):
        discover(_csv(imgs, "path,label\nimgs/imgs.0.jpg,cat,tabby\nimgs/imgs.1.jpg,dog\n"))


def test_dropped_rows_are_reported(imgs: Path) -> None:
    found = discover(_csv(imgs, "path,label\nimgs/imgs.0.jpg,cat\nimgs/imgs.1.jpg,\n,dog\nimgs/imgs.2.jpg,dog\n\n"))
    assert len(found.train) == 2
    assert any("dropped 2 row(s)" in n and "line(s) 3, 4" in n for n in found.notes)


def test_conflicting_labels_are_refused_with_both_lines(imgs: Path) -> None:
    text = "path,label\nimgs/imgs.0.jpg,cat\nimgs/imgs.1.jpg,dog\n./imgs/imgs.0.jpg,dog\n"
    with pytest.raises(DataError, match=r"conflicting labels for ./imgs/imgs.0.jpg: 'cat' on line 2 and 'dog' on line 4"):
        discover(_csv(imgs, text))


def test_repeated_row_counted_once(imgs: Path) -> None:
    found = discover(_csv(imgs, "path,label\nimgs/imgs.0.jpg,cat\nimgs/imgs.1.jpg,dog\nimgs/imgs.0.jpg,cat\n"))
    assert len(found.train) == 2
    assert any("counted once" in n and "line(s) 4" in n for n in found.notes)


def _names(folder: Path, names: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    src = photos(folder / "_src", len(names))
    for s, n in zip(src, names):
        s.rename(folder / n)
    (folder / "_src").rmdir()
    return folder


def test_one_number_too_many_is_not_a_label(tmp_path: Path) -> None:
    root = _names(tmp_path / "flat", [f"cat.{i}.2.jpg" for i in range(11)] + [f"dog.{i}.2.jpg" for i in range(11)])
    with pytest.raises(DataError, match="no labels"):
        discover(root)  # before: 22 classes cat.0 .. dog.10
    found = discover(root, labels_from_filename=True)
    assert found.train.counts() == {"cat": 11, "dog": 11}


def test_camera_names_are_not_labels(tmp_path: Path) -> None:
    root = _names(tmp_path / "flat", [f"IMG_{1000 + i}.jpg" for i in range(4)] + [f"DSC_{1000 + i}.JPG" for i in range(4)])
    with pytest.raises(DataError, match="no labels.*--labels-from-filename"):
        discover(root)  # before: classes img and dsc


def test_kaggle_names_are_detected_and_said(tmp_path: Path) -> None:
    root = _names(tmp_path / "flat", [f"cat.{i}.jpg" for i in range(4)] + [f"dog.{i}.jpg" for i in range(4)])
    found = discover(root)
    assert found.train.counts() == {"cat": 4, "dog": 4}
    assert "<label>.<number>.<ext>" in found.description and "Kaggle" in found.description


def test_kaggle_detection_needs_each_label_several_times(tmp_path: Path) -> None:
    root = _names(tmp_path / "flat", [f"cat.{i}.jpg" for i in range(4)] + ["dog.0.jpg"])
    with pytest.raises(DataError, match="no labels"):
        discover(root)


def test_forced_rule_and_regex_option(tmp_path: Path) -> None:
    names = [f"great_pyrenees_{i}.jpg" for i in range(3)] + [f"Abyssinian_{i}.jpg" for i in range(3)] + ["holiday.jpg"]
    root = _names(tmp_path / "flat", names)
    found = discover(root, labels_from_filename=True)
    assert found.train.counts() == {"abyssinian": 3, "great_pyrenees": 3}
    assert any(p.endswith("holiday.jpg") and "no label in the file name" in r for p, r in found.skipped.items)
    # a rule of the user's: the label is the text before the first "_"
    found = discover(root, label_regex=r"(?P<label>[^_.]+)_")
    assert found.train.counts() == {"abyssinian": 3, "great": 3}


def test_bad_regex_is_a_usage_error(tmp_path: Path) -> None:
    root = _names(tmp_path / "flat", ["a_1.jpg", "b_1.jpg"])
    with pytest.raises(ConfigError, match="filename_label_regex"):
        discover(root, label_regex="(unclosed")
    with pytest.raises(ConfigError, match="a group"):
        discover(root, label_regex="[a-z]+_")
