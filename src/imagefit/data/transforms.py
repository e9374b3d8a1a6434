"""Preprocessing and augmentation, derived from the backbone's spec alone.

The eval transform is what timm's ``resolve_data_config`` + ``create_transform``
give for the spec (resize shorter side to ``size / crop_pct``, center crop,
normalize); it resizes with torch's antialiased uint8 kernel and normalizes
with NumPy, faster than the torchvision pipeline (BENCHMARKS.md), and a test
checks the two agree pixel for pixel within two levels.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from .. import bounds
from ..errors import invalid

if TYPE_CHECKING:
    import torch
    from torchvision import transforms as T

# Per-thread flag: this worker thread already runs torch single-threaded (see _one_torch_thread).
_LOCAL = threading.local()

# Filters torch resamples with Pillow's antialiasing filter (the fast path of Preprocess.pixels).
_TORCH_MODES = ("bicubic", "bilinear")
_PIL_INTERP = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
}


def _torchvision_transforms():  # type: ignore[no-untyped-def]
    """torchvision's transforms, imported on first use: importing torchvision is a large part of
    start-up (it pulls in torch._dynamo; BENCHMARKS.md), which the eval path (Pillow + NumPy) never needs."""
    from torchvision import transforms

    return transforms


@dataclass(frozen=True)
class Preprocess:
    """How an image becomes a model input: the part of a backbone spec that touches pixels."""

    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"
    crop_pct: float = 0.875

    def __post_init__(self) -> None:
        # The same bounds as the config and the run record (imagefit.bounds).
        bounds.check_interpolation(self.interpolation)
        bounds.check("input_size", self.input_size, bounds.INPUT_SIZE)
        bounds.check("crop_pct", self.crop_pct, bounds.CROP_PCT)
        bounds.check_channels("mean", self.mean, bounds.MEAN)
        bounds.check_channels("std", self.std, bounds.STD)

    @property
    def resize_size(self) -> int:
        """Shorter side after resizing, before the center crop (timm's rule)."""
        return int(math.floor(self.input_size / self.crop_pct))

    def key(self) -> str:
        """A short string that changes whenever preprocessing output would change."""
        return (
            f"s{self.input_size}-c{self.crop_pct:g}-{self.interpolation}-"
            f"m{','.join(f'{m:g}' for m in self.mean)}-d{','.join(f'{s:g}' for s in self.std)}"
        )

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form, stored with every model."""
        return {
            "input_size": self.input_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": self.interpolation,
            "crop_pct": self.crop_pct,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocess:
        """Inverse of :meth:`to_dict`."""
        return cls(
            int(d["input_size"]),
            tuple(float(x) for x in d["mean"]),  # type: ignore[arg-type]
            tuple(float(x) for x in d["std"]),  # type: ignore[arg-type]
            str(d.get("interpolation", "bicubic")),
            float(d.get("crop_pct", 0.875)),
        )

    # -- eval path ---------------------------------------------------------
    def resized_shape(self, h: int, w: int) -> tuple[int, int]:
        """(height, width) after resizing the shorter side to :attr:`resize_size` (torchvision's rounding)."""
        s = self.resize_size
        return (max(1, int(s * h / w)), s) if w <= h else (s, max(1, int(s * w / h)))

    def pixels(self, img: Image.Image | np.ndarray) -> np.ndarray:
        """Eval transform without normalization: uint8 ``[S, S, 3]``, what inference engines take.

        Resize the shorter side to :attr:`resize_size`, then center-crop to the
        input size. Bicubic and bilinear resizing run in torch's antialiased
        uint8 kernel: Pillow's filter (what timm's transform uses) in another
        fixed point, so on photos nearly all pixels come out identical and the
        rest one level apart (rarely two), in a fraction of Pillow's time
        (figures in BENCHMARKS.md).
        Normalizing happens inside the engine (see
        :class:`~imagefit.engine.PixelModel`): vectorized over the batch, and
        4x fewer bytes move than with float input.

        Args:
            img: An RGB Pillow image or ``uint8 [H, W, 3]`` array.
        """
        if self.interpolation not in _TORCH_MODES:
            pil = img if isinstance(img, Image.Image) else Image.fromarray(img)
            return np.asarray(self._resize_crop_pillow(pil), dtype=np.uint8)
        import torch

        arr = np.asarray(img, dtype=np.uint8)
        if not arr.flags.writeable or not arr.flags.c_contiguous:
            arr = np.array(arr)  # torch.from_numpy wants writable, contiguous memory (Pillow's is read-only)
        planes = self.resize_crop_tensor(torch.from_numpy(arr).permute(2, 0, 1)).numpy()
        # The resampler writes planar CHW. Interleave plane by plane: faster than NumPy's
        # transposing copy, and unlike torch's copy it starts no OpenMP team, whose threads
        # would spin on the core the other photo's inference runs on.
        out = np.empty((*planes.shape[1:], 3), np.uint8)
        for c in range(3):
            out[..., c] = planes[c]
        return out

    def resize_crop_tensor(self, x: torch.Tensor, *, uint8_kernel: bool | None = None) -> torch.Tensor:
        """:meth:`pixels` for a ``uint8 [3, H, W]`` tensor on any device; returns ``uint8 [3, S, S]``.

        Args:
            x: The image.
            uint8_kernel: Resample in torch's uint8 kernel (default: on the
                CPU, the only device that has one) instead of in float32 and
                rounding; the two agree within one grey level.
        """
        import torch
        from torch.nn import functional as F

        if x.device.type == "cpu":
            _one_torch_thread()
        mode = self.interpolation if self.interpolation in _TORCH_MODES else "bilinear"
        if uint8_kernel is None:
            uint8_kernel = x.device.type == "cpu"
        nh, nw = self.resized_shape(int(x.shape[1]), int(x.shape[2]))
        if (nh, nw) != tuple(x.shape[1:]):
            if uint8_kernel:
                x = F.interpolate(x[None], size=(nh, nw), mode=mode, antialias=True, align_corners=False)[0]
            else:
                y = F.interpolate(x[None].float(), size=(nh, nw), mode=mode, antialias=True, align_corners=False)[0]
                x = y.clamp_(0, 255).round_().to(torch.uint8)
        size = self.input_size
        if nh < size or nw < size:
            # torchvision's center_crop pads with zeros on both sides (extra column/row right/bottom).
            ph, pw = max(0, size - nh), max(0, size - nw)
            x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
            nh, nw = x.shape[1:]
        top, left = int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))
        return x[:, top : top + size, left : left + size]

    def _resize_crop_pillow(self, img: Image.Image) -> Image.Image:
        """The eval resize + center crop in Pillow, for filters torch has no antialiased kernel for (lanczos, nearest)."""
        w, h = img.size
        nh, nw = self.resized_shape(h, w)
        if (nw, nh) != (w, h):
            img = img.resize((nw, nh), _PIL_INTERP[self.interpolation])
        return _center_crop(img, self.input_size)

    def normalize(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 ``[H, W, 3]`` pixels -> float32 CHW array, normalized with the spec's mean/std."""
        arr = np.asarray(pixels, dtype=np.float32)
        mean = np.asarray(self.mean, dtype=np.float32) * 255.0
        inv_std = 1.0 / (np.asarray(self.std, dtype=np.float32) * 255.0)
        arr = (arr - mean) * inv_std
        return np.ascontiguousarray(arr.transpose(2, 0, 1))

    def __call__(self, img: Image.Image | np.ndarray) -> np.ndarray:
        """Eval transform: resize, center crop, normalize (float32 CHW)."""
        return self.normalize(self.pixels(img))

    # -- train path --------------------------------------------------------
    def train_transform(
        self,
        augment: str,
        *,
        rotation: float | None = None,
        zoom: float | None = None,
        shift: float | None = None,
        shear: float | None = None,
        flip: str | None = None,
        brightness: float | None = None,
    ) -> T.Compose:
        """Augmenting transform for training images: a preset, with Keras ImageDataGenerator's knobs over it.

        ``none`` is the eval transform; ``light`` adds a horizontal flip;
        ``heavy`` is the Keras notebooks' set: rotation 40°, zoom 0.2, shifts
        0.2, shear 0.2 (radians, ~11.5°) and horizontal flip. Each knob left
        at None keeps the preset's value: ``rotation`` and ``shear`` in
        degrees, ``zoom`` and ``shift`` as fractions, ``flip`` one of none,
        horizontal, vertical, both, ``brightness`` ColorJitter's fraction.
        """
        T = _torchvision_transforms()
        interp = T.InterpolationMode(self.interpolation)
        if augment not in PRESETS:
            raise invalid("augment", augment, tuple(PRESETS))
        knobs = {**PRESETS[augment]}
        given = {"rotation": rotation, "zoom": zoom, "shift": shift, "shear": shear, "flip": flip, "brightness": brightness}
        knobs.update({k: v for k, v in given.items() if v is not None})
        ops: list[object] = [T.Resize(self.resize_size, interpolation=interp), T.CenterCrop(self.input_size)]
        if knobs["rotation"] or knobs["zoom"] or knobs["shift"] or knobs["shear"]:
            ops.append(
                T.RandomAffine(
                    degrees=knobs["rotation"],
                    translate=(knobs["shift"], knobs["shift"]) if knobs["shift"] else None,
                    scale=(1 - knobs["zoom"], 1 + knobs["zoom"]) if knobs["zoom"] else None,
                    shear=knobs["shear"] or None,
                    interpolation=T.InterpolationMode.BILINEAR,
                    fill=[int(255 * m) for m in self.mean],
                )
            )
        if knobs["flip"] in ("horizontal", "both"):
            ops.append(T.RandomHorizontalFlip())
        if knobs["flip"] in ("vertical", "both"):
            ops.append(T.RandomVerticalFlip())
        if knobs["brightness"]:
            ops.append(T.ColorJitter(brightness=knobs["brightness"]))
        return T.Compose([*ops, T.ToTensor(), T.Normalize(self.mean, self.std)])  # type: ignore[list-item]


# The presets as knob values (rotation and shear in degrees); the knobs given to train_transform override them.
_NONE: dict[str, Any] = {"rotation": 0.0, "zoom": 0.0, "shift": 0.0, "shear": 0.0, "flip": "none", "brightness": 0.0}
PRESETS: dict[str, dict[str, Any]] = {
    "none": _NONE,
    "light": {**_NONE, "flip": "horizontal"},
    "heavy": {**_NONE, "rotation": 40.0, "zoom": 0.2, "shift": 0.2, "shear": math.degrees(0.2), "flip": "horizontal"},
}


def _one_torch_thread() -> None:
    """Resample single-threaded in worker threads (once per thread; the main thread is left alone).

    Photos are resized one per worker thread while other photos run through the
    engine on the other cores; torch's intra-op threads there only contend with
    that inference (OpenMP's thread count is per calling thread, so this leaves
    the main thread's training alone).
    """
    if getattr(_LOCAL, "single", False) or threading.current_thread() is threading.main_thread():
        return
    import torch

    torch.set_num_threads(1)
    _LOCAL.single = True


def _center_crop(img: Image.Image, size: int) -> Image.Image:
    """torchvision's ``center_crop`` for PIL images: same rounding, black padding if too small."""
    w, h = img.size
    if w < size or h < size:
        padded = Image.new(img.mode, (max(w, size), max(h, size)))
        padded.paste(img, ((max(w, size) - w) // 2, (max(h, size) - h) // 2))
        img, (w, h) = padded, padded.size
    top = int(round((h - size) / 2.0))
    left = int(round((w - size) / 2.0))
    return img.crop((left, top, left + size, top + size))
