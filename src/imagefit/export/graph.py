"""Export a model (or a backbone) to ONNX, atomically."""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from ..errors import ArtifactError


def export_onnx(
    module: nn.Module, path: str | Path, input_size: int, *, output_name: str = "output", pixels: bool = False, opset: int = 17
) -> Path:
    """Write ``module`` as an ONNX graph with a dynamic batch axis.

    The file is written to a temporary name and renamed, so a crash never
    leaves a half-written graph that a later run would load.

    Args:
        module: Any module mapping ``[N, 3, S, S]`` float32 to a tensor.
        path: Destination ``.onnx`` file.
        input_size: The square input side ``S``.
        pixels: The module takes uint8 ``[N, S, S, 3]`` (a :class:`~imagefit.engine.PixelModel`).
        output_name: Name of the graph's output.
        opset: ONNX opset (18 for graphs merged with the antialiased resize).

    Returns:
        The written path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = module.training
    module = module.eval()
    if pixels:
        dummy = torch.zeros(2, input_size, input_size, 3, dtype=torch.uint8)
    else:
        dummy = torch.zeros(2, 3, input_size, input_size)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                (dummy,),
                tmp,
                input_names=["input"],
                output_names=[output_name],
                dynamic_axes={"input": {0: "batch"}, output_name: {0: "batch"}},
                opset_version=opset,
                dynamo=False,
            )
        os.replace(tmp, path)
    except Exception as exc:
        raise ArtifactError(f"ONNX export to {path} failed: {exc}") from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
        module.train(was_training)
    return path
