"""Run-folder files: ``model.safetensors`` + ``imagefit.json``. Never a pickle.

Loading validates the JSON's types, the backbone name and every tensor's
shape before anything runs, and refuses pickled checkpoints outright.
"""

from __future__ import annotations

import json
import math
import platform
import re
import time
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save

from .errors import ArtifactError, ImagefitError
from .paths import atomic_write_bytes, atomic_write_json

META_FILE = "imagefit.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 1
PICKLE_SUFFIXES = (".pkl", ".pickle", ".pt", ".pth", ".bin", ".ckpt", ".h5", ".joblib")


def versions() -> dict[str, str]:
    """Versions of what produced a model (stored in its metadata)."""
    import timm

    from . import __version__

    return {
        "imagefit": __version__,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "python": platform.python_version(),
    }


def save_weights(path: Path, module: torch.nn.Module) -> None:
    """Write a module's state as safetensors, atomically."""
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    atomic_write_bytes(path, save(state))


def save_run(folder: Path, module: torch.nn.Module, meta: dict[str, Any]) -> None:
    """Write weights then metadata (so metadata never describes missing weights)."""
    folder.mkdir(parents=True, exist_ok=True)
    save_weights(folder / WEIGHTS_FILE, module)
    meta = {"format_version": FORMAT_VERSION, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **meta}
    atomic_write_json(folder / META_FILE, meta)


def read_meta(folder: Path) -> dict[str, Any]:
    """Read and type-check ``imagefit.json``.

    Raises:
        ArtifactError: missing folder/file, bad JSON, or wrong types.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ArtifactError(f"run folder not found: {folder}")
    path = folder / META_FILE
    if not path.is_file():
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
        hint = f" (found {', '.join(pickles)}: pickled files are never loaded)" if pickles else ""
        raise ArtifactError(f"{folder} is not an imagefit run: {META_FILE} is missing{hint}")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path}: not valid JSON ({exc})") from None
    _check(meta, dict, "the file")
    _check(meta.get("classes"), list, "classes")
    if len(meta["classes"]) < 2 or not all(isinstance(c, str) for c in meta["classes"]):
        raise ArtifactError(f"{path}: classes must be a list of at least 2 strings, received {meta['classes']!r}")
    _check(meta.get("backbone"), dict, "backbone")
    _check(meta["backbone"].get("name"), str, "backbone.name")
    _check(meta.get("preprocess"), dict, "preprocess")
    _check(meta.get("head"), dict, "head")
    for key in ("hidden", "out_features"):
        _check(meta["head"].get(key), int, f"head.{key}")
    _check(meta["head"].get("dropout"), (int, float), "head.dropout")
    # Values that pass the type checks but would crash later (inside torch, at
    # predict time, or write outside the cache) are refused here, with the reason.
    _check_values(meta, path)
    temp = meta.get("temperature", 1.0)
    if not isinstance(temp, (int, float)) or isinstance(temp, bool) or not temp > 0:
        raise ArtifactError(f"{path}: temperature must be a positive number, received {temp!r}")
    fv = meta.get("format_version")
    if fv != FORMAT_VERSION:
        raise ArtifactError(f"{path}: format_version {fv!r} is not supported (this imagefit reads {FORMAT_VERSION})")
    return meta


def _check_values(meta: dict[str, Any], path: Path) -> None:
    bb, head, pre = meta["backbone"], meta["head"], meta["preprocess"]
    _check(bb.get("num_features"), int, "backbone.num_features")
    if bb["num_features"] < 1:
        raise ArtifactError(f"{path}: backbone.num_features must be positive, received {bb['num_features']}")
    digest = bb.get("digest")
    # The digest names cache files (features, ONNX graphs): only hex, never a path.
    if digest is not None and not (isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{1,128}", digest)):
        raise ArtifactError(f"{path}: backbone.digest must be a hexadecimal string, received {digest!r:.60}")
    if head["hidden"] < 0 or head["out_features"] < 1 or not 0 <= head["dropout"] < 1:
        raise ArtifactError(
            f"{path}: head needs hidden >= 0, out_features >= 1 and 0 <= dropout < 1, received "
            f"hidden={head['hidden']}, out_features={head['out_features']}, dropout={head['dropout']}"
        )
    from .data.transforms import Preprocess

    _check(pre.get("input_size"), int, "preprocess.input_size")
    for key in ("mean", "std"):
        v = pre.get(key)
        if not (
            isinstance(v, list)
            and len(v) == 3
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v)
        ):
            raise ArtifactError(f"{path}: preprocess.{key} must be a list of 3 numbers, received {v!r:.60}")
    crop = pre.get("crop_pct", 0.875)
    ok = (
        16 <= pre["input_size"] <= 4096
        and all(x > 0 for x in pre["std"])
        and isinstance(crop, (int, float))
        and not isinstance(crop, bool)
        and 0.05 <= crop <= 2
        and isinstance(pre.get("interpolation", "bicubic"), str)
    )
    if not ok:
        raise ArtifactError(
            f"{path}: preprocess needs 16 <= input_size <= 4096, std > 0, 0.05 <= crop_pct <= 2 and an "
            f"interpolation name, received {pre!r:.200}"
        )
    try:
        Preprocess.from_dict(pre)
    except (ImagefitError, KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{path}: preprocess: {exc}") from None


def _check(value: Any, kind: type | tuple[type, ...], name: str) -> None:
    ok = isinstance(value, kind) and not (isinstance(value, bool) and kind in (int, (int, float)))
    if not ok:
        want = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ArtifactError(f"{META_FILE}: {name} must be {want}, received {type(value).__name__} {value!r:.60}")


def load_weights(folder: Path, module: torch.nn.Module, prefix: str = "", others: tuple[str, ...] = ()) -> None:
    """Load ``model.safetensors`` into ``module``, checking names and shapes.

    Args:
        folder: The run folder.
        module: The module to fill.
        prefix: Load only the tensors under this name prefix (``"head."``),
            with the prefix stripped: a submodule without building the rest.
        others: With ``prefix``, the prefixes the file's other tensors may
            have (``("backbone.",)``); any other name is refused.

    Raises:
        ArtifactError: missing or malformed file, or tensors that do not fit.
    """
    path = Path(folder) / WEIGHTS_FILE
    if not path.is_file():
        # Say why a model.pt/.pkl beside it is not used, rather than only "missing".
        pickles = sorted(p.name for p in Path(folder).iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
        hint = f" (found {', '.join(pickles)}: pickled files are never loaded, they can run code)" if pickles else ""
        raise ArtifactError(f"{folder}: {WEIGHTS_FILE} is missing{hint}")
    try:
        foreign: list[str] = []
        if prefix:
            with safe_open(str(path), framework="pt") as f:
                state = {k[len(prefix) :]: f.get_tensor(k) for k in f.keys() if k.startswith(prefix)}
                foreign = sorted(k for k in f.keys() if not k.startswith((prefix, *others)))
        else:
            state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ArtifactError(f"{path}: not a valid safetensors file ({exc})") from None
    expected = module.state_dict()
    missing = sorted(prefix + k for k in set(expected) - set(state))
    unexpected = sorted([prefix + k for k in set(state) - set(expected)] + foreign)
    if missing or unexpected:
        raise ArtifactError(
            f"{path}: tensors do not match the model ({len(missing)} missing, e.g. {missing[:2]}; "
            f"{len(unexpected)} unexpected, e.g. {unexpected[:2]})"
        )
    for k, v in state.items():
        if tuple(v.shape) != tuple(expected[k].shape):
            raise ArtifactError(f"{path}: tensor {prefix}{k} has shape {tuple(v.shape)}, the model expects {tuple(expected[k].shape)}")
    try:
        module.load_state_dict(state)
    except (RuntimeError, ImagefitError) as exc:
        raise ArtifactError(f"{path}: {str(exc).splitlines()[0]}") from None
