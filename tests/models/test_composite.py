"""Composite backbones (``lite0+lite1``): one spec, one module, the members' features side by side."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import imagefit
from imagefit.errors import ConfigError
from imagefit.models import create_backbone, get_spec, weights_available
from imagefit.models.composite import ConcatBackbone, check_strategy


def test_spec_combines_the_members() -> None:
    spec = get_spec("lite0+lite2+lite1")
    assert spec.name == "lite0+lite2+lite1"  # members in the order given
    assert spec.input_size == 260 and spec.crop_pct == get_spec("lite2").crop_pct  # the largest member's pixels
    assert spec.num_features == 3 * 1280
    assert (spec.mean, spec.std) == (get_spec("lite0").mean, get_spec("lite0").std)
    assert spec.architecture == "tf_efficientnet_lite0+tf_efficientnet_lite2+tf_efficientnet_lite1"
    assert "lite1: " in spec.weights and "lite2: " in spec.weights
    assert weights_available("lite0+lite1") == (weights_available("lite0") and weights_available("lite1"))
    mixed = get_spec("simple_cnn+lite0")  # the first member's mean/std, the largest member's size
    assert mixed.input_size == 224 and mixed.mean == (0.0, 0.0, 0.0) and mixed.num_features == 128 + 1280


@pytest.mark.parametrize(
    ("name", "why"),
    [("lite0+", "two or more"), ("lite0+lite0", "two or more"), ("+lite1", "two or more"), ("lite0+no_such_net", "member 'no_such_net'")],
)
def test_bad_composite_names_are_refused_in_one_line(name: str, why: str) -> None:
    with pytest.raises(ConfigError) as info:
        get_spec(name)
    msg = str(info.value)
    assert msg.startswith(f"invalid model: received {name!r}; allowed: ") and why in msg and "\n" not in msg


def test_members_see_the_same_pixels_renormalized_exactly() -> None:
    torch.manual_seed(0)
    module, spec = create_backbone("lite0+simple_cnn", pretrained=False)
    assert isinstance(module, ConcatBackbone)
    keys = list(module.state_dict())
    assert keys[0].startswith("members.0.") and any(k.startswith("members.1.") for k in keys)
    module.eval()
    pixels = torch.rand(2, 3, spec.input_size, spec.input_size)  # in [0, 1], as decoded and resized
    mean, std = torch.tensor(spec.mean).view(1, 3, 1, 1), torch.tensor(spec.std).view(1, 3, 1, 1)
    lite0, cnn = module.members
    with torch.no_grad():
        got = module((pixels - mean) / std)
        # By hand: each member normalizes the same pixels with its own statistics (simple_cnn: none).
        want = torch.cat([lite0((pixels - 0.5) / 0.5), cnn(pixels)], dim=1)
    assert got.shape == (2, spec.num_features)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_only_a_linear_head_trains_on_a_composite() -> None:
    check_strategy("lite0+lite1", "linear")
    check_strategy("lite0", "finetune")
    with pytest.raises(ConfigError, match="invalid strategy with a composite model: received 'finetune'"):
        check_strategy("lite0+lite1", "finetune")


def test_train_load_predict_a_composite(tmp_path: Path, image_folder) -> None:  # type: ignore[no-untyped-def]
    data = image_folder(n_per_class=6)
    # int8: ONNX Runtime's shape inference must follow the concatenation before quantizing the graph.
    run = imagefit.train(data, out=tmp_path / "run", model="lite0+simple_cnn", epochs=15, precision="int8", progress=False)
    model = imagefit.load(run.path)
    assert model.engine.precision.startswith("int8")
    assert model.record.backbone.name == "lite0+simple_cnn" and model.record.backbone.num_features == 1280 + 128
    assert {r["label"] for r in model.predict(data / "red").records} == {"red"}
    with pytest.raises(ConfigError, match="composite"):
        imagefit.train(data, out=tmp_path / "ft", model="lite0+simple_cnn", strategy="finetune", progress=False)
