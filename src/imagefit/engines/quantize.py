"""int8 features: post-training static quantization of the exported fp32 graph, calibrated on training photos.

ONNX Runtime's quantizer (``quantize_static``) writes a QDQ graph: int8
per-channel weights and uint8 activations whose ranges come from running the
fp32 graph on calibration pixels (uint8 ``[S, S, 3]``, as
:meth:`~imagefit.data.transforms.Preprocess.pixels` makes them). ONNX Runtime
and OpenVINO both run that graph with int8 kernels.

The calibration set decides every activation range, so its digest names the
quantized graph's file and the engine's precision (``int8-<digest>``): graphs
and features made from different calibration photos are never mixed.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..data.load import read_bytes
from ..data.loader import photo_views
from ..data.transforms import Preprocess
from ..errors import ArtifactError, BadImageError, ImagefitError

# Bumped whenever the recipe below changes, so that graphs quantized the old way are made again.
RECIPE_VERSION = 1
# Photos a training run calibrates on: enough for stable activation ranges, a few seconds of decoding.
CALIBRATION_PHOTOS = 200
# Op types given int8 inputs and outputs. Clip/Relu are listed so that a convolution's output takes
# its activation's narrow range (ReLU6: [0, 6]) instead of its own wide one: quantizing convolutions
# alone left ~20 levels for ReLU6 outputs and moved lite0's features by half their norm.
OP_TYPES = ("Conv", "Clip", "Relu", "Add", "GlobalAveragePool")
# Calibration runs this many photos at most between merges of their ranges, so memory stays bounded
# (lite0 keeps ~40 MB of intermediate tensors per photo until they are merged: 200 photos at once took GBs).
_STRIDE = 16


def calibration_choice(paths: Sequence[Path], n: int = CALIBRATION_PHOTOS, seed: int = 0) -> list[Path]:
    """A seeded choice of ``n`` photos (all of them when fewer), in their original order."""
    if len(paths) <= n:
        return list(paths)
    picked = np.random.default_rng(seed).choice(len(paths), n, replace=False)
    return [paths[i] for i in sorted(picked)]


def calibration_pixels(items: Iterable[np.ndarray | str | Path], pre: Preprocess) -> np.ndarray:
    """uint8 ``[N, S, S, 3]`` from pixel arrays and/or photo files (unreadable files are left out).

    Raises:
        ImagefitError: No usable photo, or an array of the wrong type or shape.
    """
    s = pre.input_size
    out = []
    for item in items:
        if isinstance(item, np.ndarray):
            if item.dtype != np.uint8 or item.shape != (s, s, 3):
                raise ImagefitError(f"calibration pixels must be uint8 [{s}, {s}, 3], received {item.dtype} {tuple(item.shape)}")
            out.append(item)
            continue
        try:
            out.append(photo_views(read_bytes(item), pre, ("orig",))[0])
        except BadImageError:
            continue  # as in training: an unreadable photo is skipped, not fatal
    if not out:
        raise ImagefitError("int8 calibration needs at least one readable photo; received none")
    return np.ascontiguousarray(np.stack(out))


def calibration_digest(pixels: np.ndarray) -> str:
    """16 hex digits identifying the calibration pixels and the quantization recipe."""
    h = hashlib.blake2b(digest_size=8)
    h.update(f"recipe{RECIPE_VERSION}-{pixels.dtype}-{pixels.shape}".encode())
    h.update(np.ascontiguousarray(pixels).tobytes())
    return h.hexdigest()


def quantized_path(fp32: Path, digest: str) -> Path:
    """Where the int8 graph of ``fp32`` calibrated on the set ``digest`` is cached (next to it)."""
    return fp32.with_name(f"{fp32.stem}-int8-{digest}.onnx")


def shape_nodes(model: Any) -> list[str]:
    """Nodes that only compute shapes (fed by ``Shape`` alone), e.g. timm's dynamic "same" padding.

    Quantizing them would round padding amounts (their float ``Div``/``Ceil``/``Add`` look like data).
    """
    producer = {out: node for node in model.graph.node for out in node.output}
    memo: dict[int, bool] = {}

    def shape_only(node: Any) -> bool:
        if id(node) not in memo:
            memo[id(node)] = False  # a cycle cannot occur in ONNX; this only guards the recursion
            fed = [producer[i] for i in node.input if i in producer]
            memo[id(node)] = node.op_type == "Shape" or (bool(fed) and all(shape_only(n) for n in fed))
        return memo[id(node)]

    return [node.name for node in model.graph.node if shape_only(node)]


class _Reader:
    """Feeds calibration pixels one photo at a time, over the range ONNX Runtime sets (``CalibrationDataReader``)."""

    def __init__(self, pixels: np.ndarray, name: str):
        self.pixels, self.name = pixels, name
        self._it = iter(pixels)

    def __len__(self) -> int:
        return len(self.pixels)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._it = iter(self.pixels[start_index:end_index])

    def get_next(self) -> dict[str, np.ndarray] | None:
        x = next(self._it, None)
        return None if x is None else {self.name: x[None]}


def _stride(n: int) -> int:
    """The largest divisor of ``n`` up to :data:`_STRIDE` (ONNX Runtime wants strides that divide the set)."""
    return max(d for d in range(1, min(n, _STRIDE) + 1) if n % d == 0)


def quantize_graph(fp32: Path, pixels: np.ndarray, out: Path) -> Path:
    """Write the int8 QDQ graph of ``fp32`` calibrated on ``pixels`` to ``out`` (atomically).

    Args:
        fp32: An exported graph taking uint8 NHWC pixels (input ``input``).
        pixels: uint8 ``[N, S, S, 3]`` calibration photos.
        out: Destination ``.onnx`` file.

    Returns:
        ``out``.
    """
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(_Reader, CalibrationDataReader):
        pass

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="imagefit-int8-", dir=out.parent) as tmp:
        pre = Path(tmp) / "pre.onnx"
        # Shape inference and graph clean-up first, as ONNX Runtime's quantizer recommends.
        quant_pre_process(str(fp32), str(pre))
        model = onnx.load(str(pre))
        done = Path(tmp) / "int8.onnx"
        try:
            quantize_static(
                str(pre),
                str(done),
                Reader(pixels, model.graph.input[0].name),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                op_types_to_quantize=list(OP_TYPES),
                nodes_to_exclude=shape_nodes(model),
                calibrate_method=CalibrationMethod.MinMax,
                # Ranges merged every few photos ("CalibMaxIntermediateOutputs" dropped collected
                # photos unmerged in onnxruntime 1.32, so it is not used).
                extra_options={"CalibStridedMinMax": _stride(len(pixels))},
            )
        except Exception as exc:
            raise ArtifactError(f"int8 quantization of {fp32.name} failed: {exc}") from exc
        os.replace(done, out)
    return out


__all__ = [
    "CALIBRATION_PHOTOS",
    "OP_TYPES",
    "RECIPE_VERSION",
    "calibration_choice",
    "calibration_digest",
    "calibration_pixels",
    "quantize_graph",
    "quantized_path",
    "shape_nodes",
]
