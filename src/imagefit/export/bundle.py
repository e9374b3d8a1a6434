"""A trained run as one portable file: pixels in, calibrated class probabilities out.

The ONNX graph is the whole predict path of :meth:`imagefit.Model.predict`
after decoding: normalization, backbone, head, temperature and the
sigmoid/softmax. Its metadata carries what a caller needs to use it (class
names, preprocessing, imagefit version), so no imagefit is needed to run it.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn

from .._version import __version__
from ..data.transforms import Preprocess
from ..engine import PixelModel
from ..errors import ArtifactError, invalid
from ..models.heads import Head, ImageClassifier, probabilities
from ..paths import atomic_write_bytes
from .graph import export_onnx
from .resize import resize_graph

FORMATS = ("onnx", "openvino", "web")
INPUT, OUTPUT = "pixels", "probabilities"


class ProbabilityModel(nn.Module):
    """Logits -> calibrated probabilities (one column per class, also for one-logit heads).

    With ``tta`` the probabilities of the image and its mirror image are averaged,
    as :meth:`imagefit.model.Model.predict` does for a run saved with flip averaging.
    """

    def __init__(self, classifier: nn.Module, temperature: float, tta: bool = False):
        super().__init__()
        self.classifier = classifier
        self.temperature = float(temperature)
        self.tta = bool(tta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = probabilities(self.classifier(x), self.temperature)
        if self.tta:
            p = (p + probabilities(self.classifier(torch.flip(x, dims=[3])), self.temperature)) / 2
        return p


def input_note(pre: Preprocess, any_size: bool) -> str:
    """How a caller turns a photo into the graph's input (stored in the metadata, shown in the README)."""
    decode = "decode as RGB with the EXIF orientation applied"
    if any_size:
        return f"uint8 [1, H, W, 3] RGB, any H and W: {decode}; the graph resizes and crops as imagefit does"
    return (
        f"uint8 [N, {pre.input_size}, {pre.input_size}, 3] RGB: {decode}, resize the shorter side to {pre.resize_size} "
        f"({pre.interpolation}, antialiased; the longer side int({pre.resize_size} * long / short)), "
        f"then center-crop {pre.input_size}x{pre.input_size} (offsets round((side - {pre.input_size}) / 2))"
    )


def metadata(model: Any, any_size: bool) -> dict[str, str]:
    """String key/values stored in the file (ONNX ``metadata_props``, OpenVINO ``rt_info``)."""
    pre: Preprocess = model.preprocess
    return {
        "imagefit.version": __version__,
        "imagefit.classes": json.dumps(list(model.classes)),
        "imagefit.preprocess": json.dumps(pre.to_dict()),
        "imagefit.resize_size": str(pre.resize_size),
        "imagefit.temperature": repr(float(model.temperature)),
        "imagefit.tta": "true" if model.tta else "false",
        "imagefit.backbone": str(model.meta["backbone"]["name"]),
        "imagefit.input": input_note(pre, any_size),
        "imagefit.output": f"float32 [N, {len(model.classes)}] calibrated probabilities, columns in imagefit.classes order",
    }


def onnx_model(model: Any, *, any_size: bool = False) -> onnx.ModelProto:
    """The run's probability graph (uint8 NHWC pixels -> probabilities), with metadata."""
    pre: Preprocess = model.preprocess
    head: Head = model.head
    classifier = ImageClassifier(model.backbone, head).eval()
    module = PixelModel(ProbabilityModel(classifier, model.temperature, model.tta), pre.mean, pre.std).eval()
    with tempfile.TemporaryDirectory(prefix="imagefit-export-") as tmp:
        path = export_onnx(module, Path(tmp) / "model.onnx", pre.input_size, output_name=OUTPUT, pixels=True, opset=18)
        graph = onnx.load(str(path))
    graph.graph.input[0].name = INPUT
    for node in graph.graph.node:
        node.input[:] = [INPUT if i == "input" else i for i in node.input]
    if any_size:
        graph = _with_resize(graph, pre)
    onnx.helper.set_model_props(graph, metadata(model, any_size))
    onnx.checker.check_model(graph)
    return graph


def _with_resize(graph: onnx.ModelProto, pre: Preprocess) -> onnx.ModelProto:
    """Prefix the graph with :func:`~imagefit.export.resize.resize_graph` (input ``image``, batch of one)."""
    from onnx import compose

    front = resize_graph(pre, input_name="image", output_name="resized_pixels")
    front.ir_version = graph.ir_version
    merged = compose.merge_models(front, graph, io_map=[("resized_pixels", INPUT)])
    return merged


def export_model(run_path: str | Path, out: str | Path, format: str = "onnx", *, any_size: bool = False) -> Path:
    """Export a trained run for use without imagefit.

    Args:
        run_path: The run folder (as :func:`imagefit.load` takes).
        out: Destination: a ``.onnx`` file, an OpenVINO ``.xml`` (its weights
            go beside it in the ``.bin`` OpenVINO reads with it), or a folder
            for ``web``.
        format: ``onnx``, ``openvino`` or ``web`` (a static page classifying
            photos in the browser, see :mod:`imagefit.export.web`).
        any_size: The graph takes one photo of any size (``uint8 [1, H, W, 3]``)
            and resizes and crops inside; otherwise it takes
            ``uint8 [N, S, S, 3]`` already resized and cropped (see the
            ``imagefit.input`` metadata). ``web`` always takes any size.

    Returns:
        The written file (``onnx``, ``openvino``) or folder (``web``).

    Raises:
        ConfigError: unknown format.
        ArtifactError: the run cannot be loaded or exported.
    """
    if format not in FORMATS:
        raise invalid("format", format, FORMATS)
    from ..model import Model

    model = Model.load(run_path)
    out = Path(out)
    if format == "web":
        from .web import write_site

        return write_site(onnx_model(model, any_size=True), model, out)
    graph = onnx_model(model, any_size=any_size)
    if format == "onnx":
        out.parent.mkdir(parents=True, exist_ok=True)
        return atomic_write_bytes(out, graph.SerializeToString())
    return _write_openvino(graph, metadata(model, any_size), out)


def _write_openvino(graph: onnx.ModelProto, meta: dict[str, str], out: Path) -> Path:
    """OpenVINO IR (``.xml`` + ``.bin``) in fp32, metadata in ``rt_info['imagefit']``."""
    try:
        import openvino as ov
    except ImportError:
        raise ArtifactError("--format openvino needs the openvino package: pip install 'imagefit[openvino]'") from None
    if out.suffix != ".xml":
        raise invalid("OpenVINO output", str(out), "a path ending in .xml")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="imagefit-export-", dir=out.parent) as tmp:
        src = Path(tmp) / "model.onnx"
        src.write_bytes(graph.SerializeToString())
        ov_model = ov.convert_model(str(src))
        for key, value in meta.items():
            ov_model.set_rt_info(value, ["imagefit", key.removeprefix("imagefit.")])
        # fp16 weights would move probabilities by more than predict's 1e-3.
        ov.save_model(ov_model, str(Path(tmp) / "model.xml"), compress_to_fp16=False)
        # The .bin first: an .xml never names weights that are not there.
        os.replace(Path(tmp) / "model.bin", out.with_suffix(".bin"))
        os.replace(Path(tmp) / "model.xml", out)
    return out
