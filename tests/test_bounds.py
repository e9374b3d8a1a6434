"""One set of validity bounds: the config, the run record and Preprocess agree on them."""

from __future__ import annotations

import pytest

from imagefit import bounds
from imagefit.config import DataConfig
from imagefit.data.transforms import Preprocess
from imagefit.errors import ArtifactError, ConfigError
from imagefit.record import preprocess_from_dict


def test_range_membership() -> None:
    assert 32 in bounds.INPUT_SIZE and 1024 in bounds.INPUT_SIZE
    assert 31 not in bounds.INPUT_SIZE and 1025 not in bounds.INPUT_SIZE and 96.5 not in bounds.INPUT_SIZE
    assert True not in bounds.TEMPERATURE and float("nan") not in bounds.TEMPERATURE and "1" not in bounds.TEMPERATURE
    assert 0.0 not in bounds.LR and 10.0 in bounds.LR


def test_check_message_is_keras_style() -> None:
    with pytest.raises(ConfigError, match=r"invalid img_size: received 16; allowed: an integer from 32 to 1024"):
        bounds.check("img_size", 16, bounds.INPUT_SIZE)
    with pytest.raises(ArtifactError, match=r"^f.json: invalid temperature: received 500; allowed: a number in \[0.01, 100.0\]"):
        bounds.check("temperature", 500, bounds.TEMPERATURE, lambda m: ArtifactError(f"f.json: {m}"))


@pytest.mark.parametrize("size", [16, 31, 1025, 4096])
def test_input_size_refused_the_same_everywhere(size: int) -> None:
    with pytest.raises(ConfigError, match="img_size"):
        DataConfig(img_size=size)
    with pytest.raises(ConfigError, match="input_size"):
        Preprocess(size, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    with pytest.raises(ArtifactError, match="input_size"):
        preprocess_from_dict({"input_size": size, "mean": [0.5] * 3, "std": [0.5] * 3})


@pytest.mark.parametrize("size", [32, 96, 1024])
def test_input_size_accepted_the_same_everywhere(size: int) -> None:
    assert DataConfig(img_size=size).img_size == size
    pre = Preprocess(size, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert preprocess_from_dict(pre.to_dict()) == pre


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"std": (0.5, 0.0, 0.5)}, r"invalid std"),
        ({"mean": (0.5, 0.5, 3.0)}, r"invalid mean"),
        ({"crop_pct": 0.0}, r"invalid crop_pct"),
        ({"interpolation": "cubic"}, r"invalid interpolation: received 'cubic'"),
    ],
)
def test_preprocess_bounds(kwargs: dict, pattern: str) -> None:  # type: ignore[type-arg]
    args = {"input_size": 224, "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), **kwargs}
    with pytest.raises(ConfigError, match=pattern):
        Preprocess(**args)


@pytest.mark.parametrize(
    ("classes", "pattern"),
    [
        (["a"], r"invalid number of classes: received 1"),
        (["a", ""], r"non-empty names"),
        (["a", "b", "a"], r"invalid classes: received \"duplicates \['a'\]\"; allowed: unique names"),
        (["a", 3], r"a list of class names"),
        ([f"c{i}" for i in range(10001)], r"received 10001"),
    ],
)
def test_classes(classes: list, pattern: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ConfigError, match=pattern) as info:
        bounds.check_classes(classes)
    assert len(str(info.value)) < 300


def test_classes_accepted() -> None:
    bounds.check_classes(["cats", "dogs"])
