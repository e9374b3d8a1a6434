"""Exact and near-duplicate pairs within and across splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from imagefit.duplicates import find_duplicates, mirror_invariant, near_pairs


def test_near_pairs_blocked_equals_brute_force() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((300, 16)).astype(np.float32)
    x[50] = x[10] + 0.01
    x[299] = x[0] * 3
    unit = mirror_invariant(x)
    brute = [(i, j) for i in range(300) for j in range(i + 1, 300) if unit[i] @ unit[j] >= 0.7]
    for block in (7, 64, 1000):
        assert [(i, j) for i, j, _ in near_pairs(unit, 0.7, block=block)] == brute
    assert (10, 50) in brute and (0, 299) in brute


def test_mirror_invariant_features_match_for_swapped_views() -> None:
    rng = np.random.default_rng(2)
    f = rng.standard_normal((1, 2, 8))
    mirrored = f[:, ::-1]
    assert mirror_invariant(f) == pytest.approx(mirror_invariant(mirrored))


def test_exact_and_near_pairs_with_split_counts() -> None:
    paths = [Path(f"p{i}.jpg") for i in range(6)]
    splits = ["train", "train", "val", "val", "test", "train"]
    digests = ["a", "b", "a", "c", "a", "d"]
    rng = np.random.default_rng(3)
    feats = rng.standard_normal((6, 32))
    feats[[0, 2, 4]] = feats[0]  # the exact copies
    feats[3] = feats[1] + 0.01  # val photo 3 is a near copy of train photo 1
    rep = find_duplicates(paths, splits, digests, feats, threshold=0.95)
    assert [(p.a.name, p.b.name, p.exact) for p in rep.pairs] == [
        ("p0.jpg", "p2.jpg", True),
        ("p0.jpg", "p4.jpg", True),
        ("p1.jpg", "p3.jpg", False),
    ]
    assert rep.counts() == {"train~test": {"exact": 1, "near": 0}, "train~val": {"exact": 1, "near": 1}}
    assert sorted(p.name for p in rep.leaked("val")) == ["p2.jpg", "p3.jpg"]
    assert [p.name for p in rep.leaked("test")] == ["p4.jpg"]
    assert rep.to_dict()["counts"] == rep.counts()


def test_exact_only_without_features_and_unreadable_files_never_pair() -> None:
    rep = find_duplicates([Path("a"), Path("b"), Path("c")], ["train", "val", "val"], [None, None, "x"])
    assert rep.pairs == []
    with pytest.raises(ValueError):
        find_duplicates([Path("a")], ["train", "val"], ["x"])
