"""Preprocess: the fast eval path matches torchvision and timm; train presets have the right shape."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from imagefit.data.load import load_image
from imagefit.data.transforms import Preprocess, _center_crop
from imagefit.errors import ConfigError
from imagefit.models import get_spec

LITE0 = Preprocess(224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bicubic", 0.875)
IMAGENET = Preprocess(224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "bilinear", 0.95)
SCRATCH = Preprocess(150, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "bilinear", 1.0)

# The fast eval path resizes in torch's antialiased uint8 kernel, Pillow's filter in another fixed
# point: against timm/torchvision (Pillow), on 100 validation photos 99.66% of pixels are identical,
# 0.34% one level apart, one in a million two (1 level = 1/255/std = 0.0078 for std 0.5).
TWO_LEVELS = 2.01 / (255 * 0.5)


def torchvision_eval(pre: Preprocess):  # type: ignore[no-untyped-def]
    """The same eval transform built from torchvision: the reference Preprocess must match."""
    from torchvision import transforms as T

    return T.Compose(
        [
            T.Resize(pre.resize_size, interpolation=T.InterpolationMode(pre.interpolation)),
            T.CenterCrop(pre.input_size),
            T.ToTensor(),
            T.Normalize(pre.mean, pre.std),
        ]
    )


def _levels(a: np.ndarray, b: np.ndarray, pre: Preprocess) -> np.ndarray:
    """|a - b| of normalized CHW arrays in 8-bit levels."""
    return np.abs(a - b) * 255 * np.asarray(pre.std, np.float32)[:, None, None]


def _noise(size: tuple[int, int], seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    # Smooth it a little so it looks more like a photo than white noise.
    img = Image.fromarray(arr).resize((max(1, size[0] // 4), max(1, size[1] // 4))).resize(size, Image.Resampling.BILINEAR)
    return img


@pytest.mark.parametrize("pre", [LITE0, IMAGENET, SCRATCH], ids=["lite0", "imagenet", "scratch"])
@pytest.mark.parametrize("size", [(48, 40), (40, 48), (300, 200), (199, 401), (256, 256), (640, 480), (17, 9)])
def test_eval_matches_torchvision(pre: Preprocess, size: tuple[int, int]) -> None:
    img = _noise(size)
    ours = pre(img)
    ref = torchvision_eval(pre)(img).numpy()
    assert ours.dtype == np.float32
    assert ours.shape == ref.shape == (3, pre.input_size, pre.input_size)
    diff = _levels(ours, ref, pre)
    assert diff.max() <= 2.01
    assert diff.mean() < 0.1  # pure noise rounds apart more often than photos (7% of pixels at worst)


def test_eval_matches_timm_create_transform(sample_data: Path) -> None:
    import timm
    import timm.data

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    cfg = timm.data.resolve_data_config({}, model=model)
    tf = timm.data.create_transform(**cfg)
    pre = get_spec("lite0").preprocess
    assert pre.input_size == cfg["input_size"][-1]
    assert pre.crop_pct == pytest.approx(cfg["crop_pct"])
    assert pre.interpolation == cfg["interpolation"]
    assert pre.mean == pytest.approx(cfg["mean"]) and pre.std == pytest.approx(cfg["std"])
    for photo in ("val/cats/cat.2000.jpg", "val/dogs/dog.2000.jpg", "train/cats/cat.0.jpg"):
        img = load_image(sample_data / photo)
        ref = tf(img).numpy()
        ours = pre(img)
        assert ours.shape == ref.shape
        diff = _levels(ours, ref, pre)
        assert diff.max() <= 2.01, photo
        assert (diff > 0.5).mean() < 0.01, photo


def test_eval_matches_timm_for_lite2_on_upscaled_photo(sample_data: Path) -> None:
    import timm.data

    pre = get_spec("lite2").preprocess
    cfg = timm.data.resolve_data_config({}, pretrained_cfg=timm.models.get_pretrained_cfg("tf_efficientnet_lite2").to_dict())
    tf = timm.data.create_transform(**cfg)
    img = load_image(sample_data / "val/cats/cat.2001.jpg").resize((500, 380), Image.Resampling.BICUBIC)
    diff = _levels(pre(img), tf(img).numpy(), pre)
    assert diff.max() <= 2.01 and (diff > 0.5).mean() < 0.01


def test_pixels_is_resize_crop_without_normalization() -> None:
    img = _noise((300, 200))
    px = LITE0.pixels(img)
    assert px.dtype == np.uint8 and px.shape == (224, 224, 3)
    norm = (px.astype(np.float32) / 255.0 - 0.5) / 0.5
    assert np.abs(norm.transpose(2, 0, 1) - LITE0(img)).max() < 1e-5


@pytest.mark.parametrize("size", [(300, 200), (200, 300), (224, 224), (40, 30), (1000, 20)])
def test_pixels_same_from_array_and_pillow_image(size: tuple[int, int]) -> None:
    img = _noise(size)
    for pre in (LITE0, IMAGENET, Preprocess(64, (0.5,) * 3, (0.5,) * 3, "bilinear", 1.15)):
        assert np.array_equal(pre.pixels(img), pre.pixels(np.asarray(img)))


@pytest.mark.parametrize("interpolation", ["lanczos", "nearest"])
def test_pillow_only_filters_match_torchvision(interpolation: str) -> None:
    pre = Preprocess(224, (0.5,) * 3, (0.5,) * 3, interpolation, 0.875)
    for size in [(300, 200), (199, 401), (40, 48)]:
        img = _noise(size)
        assert np.abs(pre(img) - torchvision_eval(pre)(img).numpy()).max() <= 1e-5


@pytest.mark.parametrize(
    "pre", [LITE0, IMAGENET, SCRATCH, Preprocess(64, (0.5,) * 3, (0.5,) * 3, "bicubic", 1.15)], ids=["lite0", "imagenet", "scratch", "pad"]
)
def test_float_resampling_for_gpus_matches_uint8_kernel(pre: Preprocess) -> None:
    """Devices without torch's uint8 kernel (CUDA) resample in float: same pixels within one level."""
    for size in [(300, 200), (199, 401), (48, 40), (17, 9)]:
        x = torch.from_numpy(np.array(_noise(size))).permute(2, 0, 1)
        a = pre.resize_crop_tensor(x, uint8_kernel=True)
        b = pre.resize_crop_tensor(x, uint8_kernel=False)
        assert a.dtype == b.dtype == torch.uint8 and a.shape == b.shape == (3, pre.input_size, pre.input_size)
        assert (a.int() - b.int()).abs().max() <= 1


def test_resize_size_follows_timm_rule() -> None:
    assert LITE0.resize_size == 256
    assert get_spec("lite1").preprocess.resize_size == 272
    assert get_spec("lite2").preprocess.resize_size == 292
    assert SCRATCH.resize_size == 150


def test_upscale_small_image_crop_pct_above_one() -> None:
    pre = Preprocess(64, (0.5,) * 3, (0.5,) * 3, "bilinear", 1.15)  # resize to 55, then pad-crop to 64
    img = _noise((40, 30))
    out = pre(img)
    ref = torchvision_eval(pre)(img).numpy()
    assert out.shape == (3, 64, 64)
    assert np.abs(out - ref).max() <= TWO_LEVELS


@pytest.mark.parametrize("augment", ["none", "light", "heavy"])
@pytest.mark.parametrize("pre", [LITE0, SCRATCH], ids=["lite0", "scratch"])
def test_train_transform_shapes(pre: Preprocess, augment: str) -> None:
    tf = pre.train_transform(augment)
    torch.manual_seed(0)
    for size in ((48, 40), (40, 120), (500, 300)):
        x = tf(_noise(size))
        assert isinstance(x, torch.Tensor)
        assert x.shape == (3, pre.input_size, pre.input_size) and x.dtype == torch.float32
        assert torch.isfinite(x).all()


def test_train_transform_none_equals_eval() -> None:
    img = _noise((320, 240))
    x = LITE0.train_transform("none")(img).numpy()
    assert np.abs(x - LITE0(img)).max() <= TWO_LEVELS


def test_train_transform_heavy_is_random() -> None:
    img = _noise((320, 240))
    tf = LITE0.train_transform("heavy")
    torch.manual_seed(0)
    a = tf(img)
    b = tf(img)
    torch.manual_seed(0)
    c = tf(img)
    assert not torch.equal(a, b)
    assert torch.equal(a, c)  # seeded by torch's generator: reproducible


def test_bad_augment_and_interpolation() -> None:
    with pytest.raises(ConfigError, match=r"received 'wild'.*none, light, heavy"):
        LITE0.train_transform("wild")
    with pytest.raises(ConfigError, match=r"interpolation.*received 'cubic'.*allowed"):
        Preprocess(224, (0.5,) * 3, (0.5,) * 3, "cubic")


def test_dict_round_trip_and_key() -> None:
    d = IMAGENET.to_dict()
    assert Preprocess.from_dict(d) == IMAGENET
    assert Preprocess.from_dict({"input_size": 224, "mean": [0.5] * 3, "std": [0.5] * 3}) == LITE0
    keys = {p.key() for p in (LITE0, IMAGENET, SCRATCH, Preprocess(240, (0.5,) * 3, (0.5,) * 3))}
    assert len(keys) == 4
    assert LITE0.key() == Preprocess.from_dict(LITE0.to_dict()).key()


@pytest.mark.parametrize("size", [(10, 7), (7, 10), (224, 100), (100, 224), (225, 300), (224, 224)])
def test_center_crop_equals_torchvision(size: tuple[int, int]) -> None:
    from torchvision.transforms import functional as TF

    img = _noise(size)
    ours = np.asarray(_center_crop(img, 224))
    ref = np.asarray(TF.center_crop(img, [224, 224]))
    assert ours.shape == (224, 224, 3)
    assert np.array_equal(ours, ref)


# -- issue 13: Keras ImageDataGenerator knobs over the presets ---------------------------------------
def _ops(tf: object) -> dict[str, object]:
    return {type(t).__name__: t for t in tf.transforms}  # type: ignore[attr-defined]


def test_knobs_override_the_preset() -> None:
    heavy = _ops(LITE0.train_transform("heavy"))
    assert list(heavy["RandomAffine"].degrees) == [-40.0, 40.0] and "RandomVerticalFlip" not in heavy
    tuned = _ops(LITE0.train_transform("heavy", rotation=10, zoom=0.1, flip="both", brightness=0.3))
    affine = tuned["RandomAffine"]
    assert list(affine.degrees) == [-10.0, 10.0] and tuple(affine.scale) == (0.9, 1.1) and tuple(affine.translate) == (0.2, 0.2)
    assert {"RandomHorizontalFlip", "RandomVerticalFlip", "ColorJitter"} <= set(tuned)
    assert tuple(tuned["ColorJitter"].brightness) == pytest.approx((0.7, 1.3))


def test_knobs_on_none_and_flip_off() -> None:
    plain = _ops(LITE0.train_transform("none", shift=0.1))
    assert tuple(plain["RandomAffine"].translate) == (0.1, 0.1) and list(plain["RandomAffine"].degrees) == [0.0, 0.0]
    assert "RandomHorizontalFlip" not in _ops(LITE0.train_transform("light", flip="none"))


def test_knobs_keep_the_output_shape() -> None:
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 200, 3), dtype=np.uint8))
    tf = LITE0.train_transform("heavy", rotation=30, shear=20, flip="vertical", brightness=0.5)
    assert tuple(tf(img).shape) == (3, 224, 224)


def test_knob_bounds_are_config_errors() -> None:
    from imagefit.config import DataConfig

    with pytest.raises(ConfigError, match="invalid rotation"):
        DataConfig(rotation=200)
    with pytest.raises(ConfigError, match="invalid flip"):
        DataConfig(flip="diagonal")
    assert DataConfig(zoom=0.2, flip="both").augment_knobs() == {"zoom": 0.2, "flip": "both"}


def test_pixels_run_torch_single_threaded_in_worker_threads_only():
    """A worker thread resamples with one torch thread (the others' cores run inference); the main thread keeps its count."""
    import threading

    pre = Preprocess(32, (0.5,) * 3, (0.5,) * 3, "bicubic", 0.875)
    img = np.random.default_rng(0).integers(0, 255, (60, 50, 3), dtype=np.uint8)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen: list[int] = []

        def work() -> None:
            pre.pixels(img)
            seen.append(torch.get_num_threads())

        t = threading.Thread(target=work)
        t.start()
        t.join()
        pre.pixels(img)
        assert seen == [1]
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
