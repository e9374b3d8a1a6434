"""labels.py: CSV rows and file-name rules (the user-facing cases are in tests/reliability/test_labels.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagefit.data.labels import FILENAME_LABEL, compile_label_regex, from_filenames, kaggle_names, read_csv
from imagefit.errors import DataError


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("cat.0.jpg", "cat"),
        ("cat.0.2.jpg", "cat"),
        ("great_pyrenees_10.jpg", "great_pyrenees"),
        ("beagle-3.png", "beagle"),
        ("x.jpg", None),
    ],
)
def test_default_rule(name: str, label: str | None) -> None:
    got = from_filenames([Path(name)])
    assert (got.labels[0] if got.labels else None) == label
    m = FILENAME_LABEL.match(name)  # the rule kaggle-prep uses too
    assert (m.group("label").lower() if m else None) == label


def test_kaggle_names_only_on_the_kaggle_pattern() -> None:
    names = [Path(f"{c}.{i}.jpg") for c in ("cat", "dog") for i in range(3)]
    got = kaggle_names(names)
    assert got is not None and sorted(set(got.labels)) == ["cat", "dog"]
    assert kaggle_names([Path(f"IMG_{i}.jpg") for i in range(6)]) is None
    assert kaggle_names([*names, Path("cat.7.2.jpg")]) is None
    assert kaggle_names(names[:5]) is None  # dog seen twice only
    assert kaggle_names([]) is None


def test_user_regex_first_group() -> None:
    got = from_filenames([Path("2024_cat_001.jpg"), Path("2024_dog_002.jpg")], regex=r"\d+_([a-z]+)_")
    assert got.labels == ["cat", "dog"]
    assert compile_label_regex(None) is FILENAME_LABEL


def test_csv_line_numbers_count_physical_lines(tmp_path: Path) -> None:
    (tmp_path / "l.csv").write_text('path,label\n\n"a\nb.png",cat\nc.png\n', encoding="utf-8")
    with pytest.raises(DataError, match="line 5: no label field"):
        read_csv(tmp_path / "l.csv")


def test_csv_empty_and_header_only(tmp_path: Path) -> None:
    (tmp_path / "e.csv").write_text("", encoding="utf-8")
    with pytest.raises(DataError, match="empty"):
        read_csv(tmp_path / "e.csv")
