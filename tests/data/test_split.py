"""stratified_split(): seeded, stratified, independent of input order."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from imagefit.data.discover import ImageSet
from imagefit.data.split import stratified_split
from imagefit.errors import DataError


def _set(counts: dict[str, int]) -> ImageSet:
    classes = sorted(counts)
    paths, labels = [], []
    for y, c in enumerate(classes):
        for i in range(counts[c]):
            paths.append(Path(f"/data/{c}/{c}_{i:03d}.jpg"))
            labels.append(y)
    return ImageSet(paths, labels, classes, "synthetic")


def test_same_seed_same_split() -> None:
    data = _set({"a": 30, "b": 20})
    tr1, va1 = stratified_split(data, 0.2, seed=7)
    tr2, va2 = stratified_split(data, 0.2, seed=7)
    assert tr1.paths == tr2.paths and va1.paths == va2.paths
    assert tr1.labels == tr2.labels and va1.labels == va2.labels


def test_different_seed_different_split() -> None:
    data = _set({"a": 30, "b": 20})
    _, va1 = stratified_split(data, 0.2, seed=0)
    _, va2 = stratified_split(data, 0.2, seed=1)
    assert set(va1.paths) != set(va2.paths)


def test_split_does_not_depend_on_input_order() -> None:
    data = _set({"a": 25, "b": 15, "c": 10})
    order = list(range(len(data)))
    random.Random(3).shuffle(order)
    shuffled = data.subset(order)
    _, va1 = stratified_split(data, 0.3, seed=5)
    _, va2 = stratified_split(shuffled, 0.3, seed=5)
    assert sorted(map(str, va1.paths)) == sorted(map(str, va2.paths))


def test_known_split_is_stable() -> None:
    # Pins the algorithm (sorted paths + PCG64): the same files must split the same way on every OS and release.
    _, va = stratified_split(_set({"a": 6, "b": 4}), 0.5, seed=0)
    assert [p.name for p in va.paths] == ["a_002.jpg", "a_003.jpg", "a_005.jpg", "b_001.jpg", "b_003.jpg"]
    assert Counter(va.labels) == {0: 3, 1: 2}


@pytest.mark.parametrize(
    ("counts", "fraction", "expected_val"),
    [
        ({"a": 50, "b": 50}, 0.2, {"a": 10, "b": 10}),
        ({"a": 40, "b": 10}, 0.2, {"a": 8, "b": 2}),
        ({"a": 30, "b": 20, "c": 10}, 0.3, {"a": 9, "b": 6, "c": 3}),
        ({"a": 2, "b": 3}, 0.2, {"a": 1, "b": 1}),  # at least one per class on each side
        ({"a": 3, "b": 3}, 0.9, {"a": 2, "b": 2}),  # never all of a class
    ],
)
def test_proportions_kept(counts: dict[str, int], fraction: float, expected_val: dict[str, int]) -> None:
    data = _set(counts)
    tr, va = stratified_split(data, fraction, seed=0)
    assert va.counts() == expected_val
    assert tr.counts() == {c: counts[c] - expected_val[c] for c in counts}
    assert not set(tr.paths) & set(va.paths)
    assert sorted(map(str, tr.paths + va.paths)) == sorted(map(str, data.paths))
    assert tr.classes == va.classes == data.classes
    for s in (tr, va):  # labels still match the files
        for p, y in zip(s.paths, s.labels):
            assert p.parent.name == s.classes[y]


def test_too_few_per_class() -> None:
    data = _set({"a": 10, "b": 1})
    with pytest.raises(DataError, match=r"class 'b' has 1 image\(s\).*at least 2"):
        stratified_split(data, 0.2, seed=0)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_fraction_out_of_range(fraction: float) -> None:
    with pytest.raises(DataError, match="val_split"):
        stratified_split(_set({"a": 5, "b": 5}), fraction, seed=0)


def test_split_of_generated_folder(image_folder) -> None:
    from imagefit.data import discover

    data = discover(image_folder(n_per_class=10)).train
    tr, va = stratified_split(data, 0.2, seed=0)
    assert va.counts() == {"green": 2, "red": 2}
    assert all(p.is_file() for p in tr.paths + va.paths)
