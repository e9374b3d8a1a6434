"""Backbone registry: names, specs, create_model heads, partial unfreezing."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

from imagefit.errors import ModelError
from imagefit.models import (
    BackboneSpec,
    ImageClassifier,
    create_backbone,
    create_model,
    get_spec,
    list_backbones,
    register_backbone,
    weights_available,
)
from imagefit.models.registry import state_digest
from imagefit.train.finetune import count_unfrozen, trainable_units


def test_list_backbones() -> None:
    names = [s.name for s in list_backbones()]
    assert names[:3] == ["lite0", "lite1", "lite2"]
    assert "simple_cnn" in names
    assert len(names) == len(set(names))
    for s in list_backbones():
        assert isinstance(s, BackboneSpec)
        assert s.num_features > 0 and s.input_size >= 32


def test_get_spec_unknown_lists_allowed_names() -> None:
    with pytest.raises(ModelError) as info:
        get_spec("no_such_model_xyz")
    msg = str(info.value)
    assert "'no_such_model_xyz'" in msg
    for name in ("lite0", "lite1", "lite2", "simple_cnn"):
        assert name in msg
    assert "timm" in msg
    assert "\n" not in msg


def test_create_backbone_unknown() -> None:
    with pytest.raises(ModelError, match="unknown model"):
        create_backbone("definitely_not_a_model")


@pytest.mark.parametrize("name", ["lite0", "lite1", "lite2"])
def test_lite_specs_match_timm_pretrained_cfg(name: str) -> None:
    spec = get_spec(name)
    cfg = timm.models.get_pretrained_cfg(f"tf_efficientnet_{name}")
    assert spec.architecture == f"tf_efficientnet_{name}"
    assert spec.input_size == cfg.input_size[-1]
    assert spec.crop_pct == pytest.approx(cfg.crop_pct)
    assert spec.interpolation == cfg.interpolation
    assert spec.mean == pytest.approx(cfg.mean)
    assert spec.std == pytest.approx(cfg.std)
    assert spec.num_features == 1280
    assert spec.preprocess.input_size == spec.input_size


def test_lite_input_sizes() -> None:
    assert [get_spec(n).input_size for n in ("lite0", "lite1", "lite2")] == [224, 240, 260]


@pytest.mark.parametrize("name", ["lite0", "lite1", "lite2"])
def test_lite_weights_available_offline(name: str) -> None:
    assert weights_available(name)


def test_simple_cnn_spec() -> None:
    spec = get_spec("simple_cnn")
    assert spec.input_size == 150 and spec.default_hidden == 512 and spec.default_dropout == 0.5
    assert spec.weights.startswith("none")


def test_timm_spec_for_any_timm_name() -> None:
    spec = get_spec("resnet18")
    cfg = timm.models.get_pretrained_cfg("resnet18")
    assert spec.architecture == "resnet18"
    assert spec.input_size == cfg.input_size[-1]
    assert spec.crop_pct == pytest.approx(cfg.crop_pct)
    assert spec.mean == pytest.approx(cfg.mean)
    assert spec.num_features == 512
    assert "Hugging Face" in spec.weights


@pytest.mark.parametrize(("num_classes", "out"), [(2, 1), (3, 3), (5, 5)])
def test_create_model_head_outputs(num_classes: int, out: int) -> None:
    model = create_model("simple_cnn", num_classes, pretrained=False)
    assert isinstance(model, ImageClassifier)
    assert model.head.out_features == out
    model.eval()
    with torch.no_grad():
        y = model(torch.zeros(2, 3, 64, 64))
    assert y.shape == (2, out)


def test_create_model_lite0_binary_and_multiclass() -> None:
    m2 = create_model("lite0", 2, pretrained=False)
    assert m2.head.out_features == 1
    assert [mod.out_features for mod in m2.head.modules() if isinstance(mod, nn.Linear)] == [1]
    m4 = create_model("lite0", 4, pretrained=False, hidden=16, dropout=0.1)
    linears = [mod for mod in m4.head.modules() if isinstance(mod, nn.Linear)]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [(1280, 16), (16, 4)]
    m4.eval()
    with torch.no_grad():
        assert m4(torch.zeros(1, 3, 224, 224)).shape == (1, 4)


def test_create_model_defaults_from_spec() -> None:
    m = create_model("simple_cnn", 3, pretrained=False)
    linears = [mod for mod in m.head.modules() if isinstance(mod, nn.Linear)]
    assert [lin.out_features for lin in linears] == [512, 3]  # the notebooks' dense 512
    drops = [mod.p for mod in m.head.modules() if isinstance(mod, nn.Dropout)]
    assert drops and all(p == 0.5 for p in drops)


def test_timm_model_with_conv_head_has_matching_feature_width() -> None:
    # MobileNetV3's pooled output goes through a 1x1 conv head: num_features must be that width.
    spec = get_spec("mobilenetv3_small_050")
    m = create_model("mobilenetv3_small_050", 3, pretrained=False).eval()
    with torch.no_grad():
        feats = m.backbone(torch.zeros(1, 3, 96, 96))
        assert feats.shape == (1, spec.num_features)
        assert m(torch.zeros(1, 3, 96, 96)).shape == (1, 3)


def test_pretrained_lite0_differs_from_random_init() -> None:
    a, _ = create_backbone("lite0", pretrained=True)
    b, _ = create_backbone("lite0", pretrained=False)
    a2, _ = create_backbone("lite0", pretrained=True)
    assert state_digest(a) == state_digest(a2)
    assert state_digest(a) != state_digest(b)


def test_register_twice_is_an_error() -> None:
    spec = get_spec("lite0")
    with pytest.raises(ModelError, match="registered twice"):
        register_backbone(spec)(lambda pretrained: nn.Identity())


def test_trainable_units_lite0() -> None:
    bb, _ = create_backbone("lite0", pretrained=False)
    units = trainable_units(bb)
    # stem conv + bn, the 16 blocks of tf_efficientnet_lite0 (stages 1,2,2,3,3,4,1), head conv + bn.
    assert len(units) == 20
    assert units[0] is bb.conv_stem and units[-1] is bb.bn2 and units[-2] is bb.conv_head
    unit_params = {id(p) for u in units for p in u.parameters()}
    assert unit_params == {id(p) for p in bb.parameters()}  # every parameter belongs to a unit
    assert all(any(True for _ in u.parameters()) for u in units)


def test_trainable_units_resnet_and_cnn() -> None:
    bb, _ = create_backbone("resnet18", pretrained=False)
    units = trainable_units(bb)
    assert units[0] is bb.conv1 and units[-1] is bb.layer4
    cnn, _ = create_backbone("simple_cnn", pretrained=False)
    assert len(trainable_units(cnn)) == 8  # conv + bn of each of the 4 blocks


@pytest.mark.parametrize(
    ("total", "unfreeze", "expected"),
    [
        (20, 0.25, 5),
        (10, 0.25, 3),  # fractions round up
        (10, 0.01, 1),  # at least one
        (10, 0.99, 10),
        (10, 1, 1),
        (10, 3, 3),
        (10, 50, 10),  # at most all
    ],
)
def test_count_unfrozen(total: int, unfreeze: float, expected: int) -> None:
    assert count_unfrozen(total, unfreeze) == expected


def test_state_digest_changes_with_weights() -> None:
    m = nn.Linear(3, 2)
    d = state_digest(m)
    assert d == state_digest(m)
    with torch.no_grad():
        m.weight[0, 0] += 1
    assert state_digest(m) != d
