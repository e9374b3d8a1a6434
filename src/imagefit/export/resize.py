"""An ONNX preprocessing graph: a photo of any size -> the model's uint8 input.

It does what :meth:`imagefit.data.transforms.Preprocess.pixels` does (shorter
side to ``resize_size`` with the same rounding, antialiased bicubic or
bilinear with Pillow's filter, center crop with Python's rounding) using
ONNX's ``Resize`` (opset 18, ``antialias=1``, cubic coefficient -0.5 as
Pillow's, weights renormalized inside the image as Pillow does). It resamples
in float and rounds once, where torch's uint8 kernel rounds after each pass,
so a few pixels differ by one level; the exported file's test bounds the effect on the
probabilities.
"""

from __future__ import annotations

from typing import Any

import onnx
from onnx import TensorProto, helper

from ..data.transforms import Preprocess
from ..errors import ArtifactError

OPSET = 18
# Filters ONNX's antialiased Resize reproduces (Pillow's bicubic a=-0.5 and triangle filters).
_MODES = {"bicubic": "cubic", "bilinear": "linear"}


def _const(name: str, dtype: int, values: list[float] | list[int], dims: list[int] | None = None) -> onnx.NodeProto:
    tensor = helper.make_tensor(name + "_value", dtype, dims if dims is not None else [len(values)], values)
    return helper.make_node("Constant", [], [name], value=tensor)


def _resize_attrs(pre: Preprocess) -> dict[str, Any]:
    return {
        "mode": _MODES[pre.interpolation],
        "antialias": 1,
        "cubic_coeff_a": -0.5,
        "exclude_outside": 1,
        "coordinate_transformation_mode": "half_pixel",
    }


def resize_graph(pre: Preprocess, input_name: str = "image", output_name: str = "pixels") -> onnx.ModelProto:
    """``uint8 [1, H, W, 3]`` (any H, W) -> ``uint8 [1, S, S, 3]`` as the eval transform makes it.

    Raises:
        ArtifactError: the preprocessing cannot be expressed (lanczos/nearest
            filters, or a crop larger than the resized photo).
    """
    if pre.interpolation not in _MODES:
        raise ArtifactError(f"an any-size export needs bicubic or bilinear resizing; this model uses {pre.interpolation}")
    if pre.resize_size < pre.input_size:
        raise ArtifactError(f"an any-size export needs crop_pct <= 1; this model uses {pre.crop_pct}")
    s, r = pre.input_size, pre.resize_size
    nodes = [
        _const("r", TensorProto.DOUBLE, [float(r)], []),
        _const("two", TensorProto.DOUBLE, [2.0], []),
        _const("one_d", TensorProto.DOUBLE, [1.0], []),
        _const("s_d", TensorProto.DOUBLE, [float(s)], []),
        _const("hw_idx", TensorProto.INT64, [1, 2]),
        _const("nchw_13", TensorProto.INT64, [1, 3]),
        _const("axes_hw", TensorProto.INT64, [2, 3]),
        _const("s2", TensorProto.INT64, [s, s]),
        _const("one_i", TensorProto.INT64, [1]),
        _const("lo", TensorProto.FLOAT, [0.0], []),
        _const("hi", TensorProto.FLOAT, [255.0], []),
        helper.make_node("Cast", [input_name], ["xf"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["xf"], ["x_nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Shape", [input_name], ["shape"]),
        helper.make_node("Gather", ["shape", "hw_idx"], ["hw"]),
        helper.make_node("Cast", ["hw"], ["hw_d"], to=TensorProto.DOUBLE),
        # Shorter side -> r, the other r * long / short truncated (torchvision's rule), in float64 like Python.
        helper.make_node("ReduceMin", ["hw_d"], ["short"], keepdims=0),
        helper.make_node("Mul", ["hw_d", "r"], ["hw_r"]),
        helper.make_node("Div", ["hw_r", "short"], ["scaled"]),
        helper.make_node("Floor", ["scaled"], ["floored"]),
        helper.make_node("Max", ["floored", "one_d"], ["new_hw_d"]),
        # The shorter side itself is exactly r (a ratio of 1 already gives it).
        helper.make_node("Cast", ["new_hw_d"], ["new_hw"], to=TensorProto.INT64),
        helper.make_node("Split", ["new_hw"], ["new_h", "new_w"], axis=0, num_outputs=2),
        helper.make_node("Gather", ["shape", "one_i"], ["old_h"]),
        # Pillow's (and torch's uint8) two passes, width first, each rounded and clipped to
        # 0..255: one 2-D float pass differs from them by up to 6 levels at sharp edges.
        helper.make_node("Concat", ["nchw_13", "old_h", "new_w"], ["sizes_w"], axis=0),
        helper.make_node("Resize", ["x_nchw", "", "", "sizes_w"], ["wide"], **_resize_attrs(pre)),
        helper.make_node("Round", ["wide"], ["wide_r"]),
        helper.make_node("Clip", ["wide_r", "lo", "hi"], ["wide_c"]),
        helper.make_node("Concat", ["nchw_13", "new_h", "new_w"], ["sizes"], axis=0),
        helper.make_node("Resize", ["wide_c", "", "", "sizes"], ["resized"], **_resize_attrs(pre)),
        # Center crop: top/left = round((new - s) / 2), Python's round (half to even) as ONNX's Round.
        helper.make_node("Sub", ["new_hw_d", "s_d"], ["margin"]),
        helper.make_node("Div", ["margin", "two"], ["half"]),
        helper.make_node("Round", ["half"], ["start_d"]),
        helper.make_node("Cast", ["start_d"], ["start"], to=TensorProto.INT64),
        helper.make_node("Add", ["start", "s2"], ["end"]),
        helper.make_node("Slice", ["resized", "start", "end", "axes_hw"], ["cropped"]),
        helper.make_node("Round", ["cropped"], ["rounded"]),
        helper.make_node("Clip", ["rounded", "lo", "hi"], ["clipped"]),
        helper.make_node("Transpose", ["clipped"], ["nhwc"], perm=[0, 2, 3, 1]),
        helper.make_node("Cast", ["nhwc"], [output_name], to=TensorProto.UINT8),
    ]
    graph = helper.make_graph(
        nodes,
        "imagefit_preprocess",
        [helper.make_tensor_value_info(input_name, TensorProto.UINT8, [1, "height", "width", 3])],
        [helper.make_tensor_value_info(output_name, TensorProto.UINT8, [1, s, s, 3])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
