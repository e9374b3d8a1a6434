"""Run folders: safetensors + imagefit.json round trip, and every way they can be wrong."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from imagefit.artifacts import FORMAT_VERSION, META_FILE, WEIGHTS_FILE, load_weights, read_meta, save_run, versions
from imagefit.errors import ArtifactError
from imagefit.models import create_model, get_spec
from imagefit.models.registry import state_digest


def _model(num_classes: int = 2, hidden: int = 0) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("simple_cnn", num_classes, pretrained=False, hidden=hidden, dropout=0.1)


def _meta(num_classes: int = 2, hidden: int = 0, module: torch.nn.Module | None = None) -> dict[str, Any]:
    spec = get_spec("simple_cnn")
    meta: dict[str, Any] = {
        "classes": [f"c{i}" for i in range(num_classes)],
        "backbone": {"name": "simple_cnn", "architecture": spec.architecture, "num_features": spec.num_features},
        "preprocess": spec.preprocess.to_dict(),
        "head": {"hidden": hidden, "dropout": 0.1, "out_features": 1 if num_classes == 2 else num_classes},
        "temperature": 1.0,
        "train_counts": {f"c{i}": 3 for i in range(num_classes)},
    }
    if module is not None:
        meta["backbone"]["digest"] = state_digest(module.backbone)
    return meta


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "run"
    m = _model()
    save_run(folder, m, _meta(module=m))
    return folder


def _rewrite(folder: Path, edit) -> None:  # type: ignore[no-untyped-def]
    path = folder / META_FILE
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))


# -- round trip -----------------------------------------------------------------------------
def test_round_trip(tmp_path: Path) -> None:
    folder = tmp_path / "nested" / "run"
    m = _model(3, hidden=16)
    meta_in = _meta(3, hidden=16, module=m)
    save_run(folder, m, meta_in)
    assert sorted(p.name for p in folder.iterdir()) == [META_FILE, WEIGHTS_FILE]  # no temp files, no pickles
    meta = read_meta(folder)
    assert meta["format_version"] == FORMAT_VERSION and "created" in meta
    for k, v in meta_in.items():
        assert meta[k] == v
    fresh = _model(3, hidden=16)
    with torch.no_grad():
        for p in fresh.parameters():
            p.add_(1.0)
    load_weights(folder, fresh)
    for k, v in m.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k


def test_model_load_round_trip(run_dir: Path) -> None:
    import imagefit

    model = imagefit.load(run_dir)
    assert model.classes == ["c0", "c1"]
    assert model.preprocess == get_spec("simple_cnn").preprocess
    assert model.temperature == 1.0
    ref = _model()
    for k, v in ref.head.state_dict().items():
        assert torch.equal(model.head.state_dict()[k], v)


def test_versions() -> None:
    v = versions()
    assert set(v) >= {"imagefit", "torch", "timm", "python"}


# -- read_meta: missing and malformed files --------------------------------------------------
def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="run folder not found"):
        read_meta(tmp_path / "nope")


def test_missing_meta_with_pickles(tmp_path: Path) -> None:
    torch.save({"x": torch.zeros(1)}, tmp_path / "model.pt")
    with pytest.raises(ArtifactError, match=r"imagefit.json is missing \(found model.pt: pickled files are never loaded"):
        read_meta(tmp_path)


def test_missing_meta(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="not an imagefit run"):
        read_meta(tmp_path)


def test_bad_json(run_dir: Path) -> None:
    (run_dir / META_FILE).write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        read_meta(run_dir)
    (run_dir / META_FILE).write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        read_meta(run_dir)


def _set(path: str, value: Any):  # type: ignore[no-untyped-def]
    def edit(meta: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        d = meta
        for p in parents:
            d = d[p]
        d[last] = value

    return edit


def _delete(path: str):  # type: ignore[no-untyped-def]
    def edit(meta: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        d = meta
        for p in parents:
            d = d[p]
        del d[last]

    return edit


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [
        (_set("classes", "c0,c1"), r"classes must be list, received str"),
        (_set("classes", ["only"]), r"classes must be a list of at least 2 strings"),
        (_set("classes", ["a", 2]), r"classes must be a list of at least 2 strings"),
        (_delete("classes"), r"classes must be list, received NoneType"),
        (_set("backbone", "simple_cnn"), r"backbone must be dict, received str"),
        (_set("backbone.name", 5), r"backbone.name must be str, received int"),
        (_set("preprocess", [224]), r"preprocess must be dict, received list"),
        (_set("head", None), r"head must be dict, received NoneType"),
        (_set("head.hidden", "0"), r"head.hidden must be int, received str"),
        (_set("head.hidden", True), r"head.hidden must be int, received bool"),
        (_set("head.out_features", 1.0), r"head.out_features must be int, received float"),
        (_set("head.dropout", "0.1"), r"head.dropout must be int or float, received str"),
        (_set("temperature", -1.0), r"temperature must be a positive number, received -1.0"),
        (_set("temperature", "1"), r"temperature must be a positive number"),
        (_set("temperature", True), r"temperature must be a positive number"),
        (_set("format_version", 2), r"format_version 2 is not supported"),
        (_delete("format_version"), r"format_version None is not supported"),
    ],
)
def test_wrong_types_in_json(run_dir: Path, edit, pattern: str) -> None:  # type: ignore[no-untyped-def]
    _rewrite(run_dir, edit)
    with pytest.raises(ArtifactError, match=pattern):
        read_meta(run_dir)


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [
        # Issue 17: values that pass the type checks but are out of imagefit.bounds (one photo at
        # input_size 4096 took 127 s and 10.6 GB; the others give wrong or non-finite answers).
        (_set("preprocess.input_size", 4096), r"invalid preprocess\.input_size: received 4096"),
        (_set("classes", ["cat", "cat"]), r"invalid classes: received .*duplicates \['cat'\]"),
        (_set("temperature", 1e308), r"invalid temperature: received 1e\+308"),
        (_set("temperature", 1e-300), r"invalid temperature: received 1e-300"),
        (_set("preprocess.crop_pct", 2), r"invalid preprocess\.crop_pct: received 2"),
        (_set("preprocess.std", [1e-30, 1e-30, 1e-30]), r"invalid preprocess\.std"),
    ],
)
def test_values_out_of_bounds(run_dir: Path, edit, pattern: str) -> None:  # type: ignore[no-untyped-def]
    _rewrite(run_dir, edit)
    with pytest.raises(ArtifactError, match=pattern):
        read_meta(run_dir)


def test_save_refuses_what_load_would_refuse(tmp_path: Path) -> None:
    m = _model()
    meta = _meta(module=m)
    meta["temperature"] = 1e308
    with pytest.raises(ArtifactError, match="invalid temperature"):
        save_run(tmp_path / "r", m, meta)
    assert not (tmp_path / "r").exists()


def test_not_an_object(run_dir: Path) -> None:
    (run_dir / META_FILE).write_text("[1, 2]")
    with pytest.raises(ArtifactError, match="must be dict, received list"):
        read_meta(run_dir)


def test_error_messages_are_one_line(run_dir: Path) -> None:
    _rewrite(run_dir, _set("classes", {"a": "x" * 500}))
    with pytest.raises(ArtifactError) as info:
        read_meta(run_dir)
    assert "\n" not in str(info.value) and len(str(info.value)) < 300


# -- load_weights -------------------------------------------------------------------------------
def test_missing_weights(run_dir: Path) -> None:
    (run_dir / WEIGHTS_FILE).unlink()
    with pytest.raises(ArtifactError, match="model.safetensors is missing"):
        load_weights(run_dir, _model())


def test_garbage_weights(run_dir: Path) -> None:
    (run_dir / WEIGHTS_FILE).write_bytes(b"\x00" * 100)
    with pytest.raises(ArtifactError, match="not a valid safetensors file"):
        load_weights(run_dir, _model())


def test_truncated_weights(run_dir: Path) -> None:
    data = (run_dir / WEIGHTS_FILE).read_bytes()
    (run_dir / WEIGHTS_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match="not a valid safetensors file"):
        load_weights(run_dir, _model())


def test_mismatched_shapes(run_dir: Path) -> None:
    with pytest.raises(
        ArtifactError, match=r"tensor head\.net\.1\.(weight|bias) has shape \((1, 128|1,)\), the model expects \((3, 128|3,)\)"
    ):
        load_weights(run_dir, _model(3))


def test_missing_and_unexpected_tensors(run_dir: Path) -> None:
    with pytest.raises(
        ArtifactError, match=r"tensors do not match the model \(2 missing, e\.g\. \['head\.net\.4\.bias', 'head\.net\.4\.weight'\]"
    ):
        load_weights(run_dir, _model(2, hidden=8))


def test_wrong_dtype_tensor(run_dir: Path, tmp_path: Path) -> None:
    m = _model()
    state = {k: v.contiguous() for k, v in m.state_dict().items()}
    key = next(k for k in state if k.endswith("weight") and state[k].is_floating_point())
    state[key] = state[key].to(torch.float64)
    save_file(state, str(run_dir / WEIGHTS_FILE))
    # float64 is cast on load; what matters is no crash and the values kept.
    load_weights(run_dir, m)
    assert m.state_dict()[key].dtype == torch.float32


# -- Model.load checks that meta and weights agree ----------------------------------------------
def test_model_load_head_mismatch(run_dir: Path) -> None:
    import imagefit

    _rewrite(run_dir, _set("head.out_features", 2))
    with pytest.raises(ArtifactError, match="head has 2 outputs but 2 classes need 1"):
        imagefit.load(run_dir)


def test_model_load_unknown_backbone(run_dir: Path) -> None:
    import imagefit

    _rewrite(run_dir, _set("backbone.name", "no_such_net"))
    with pytest.raises(ArtifactError, match="unknown model 'no_such_net'"):
        imagefit.load(run_dir)


def test_model_load_more_classes_than_weights(run_dir: Path) -> None:
    import imagefit

    def edit(meta: dict[str, Any]) -> None:
        meta["classes"] = ["a", "b", "c"]
        meta["head"]["out_features"] = 3

    _rewrite(run_dir, edit)
    with pytest.raises(ArtifactError, match="shape"):
        imagefit.load(run_dir)


def test_meta_is_not_mutated_by_save(tmp_path: Path) -> None:
    m = _model()
    meta = _meta(module=m)
    before = copy.deepcopy(meta)
    save_run(tmp_path / "r", m, meta)
    assert meta == before
