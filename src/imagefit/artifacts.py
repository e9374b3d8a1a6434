"""Run-folder files: ``model.safetensors`` + ``imagefit.json``. Never a pickle.

Loading validates the JSON through :class:`~imagefit.record.RunRecord` (types
and :mod:`imagefit.bounds`), every tensor's name and shape, and the backbone's
weights against the digest the record holds, before anything runs; pickled
checkpoints are refused outright.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save

from ._version import __version__
from .errors import ArtifactError, ImagefitError
from .paths import atomic_write_bytes, atomic_write_json
from .record import FORMAT_VERSION, META_FILE, RunRecord

WEIGHTS_FILE = "model.safetensors"
# A run with --precision int8 keeps the graph it was quantized to: it depends on the run's own photos.
INT8_GRAPH_FILE = "features.int8.onnx"
PICKLE_SUFFIXES = (".pkl", ".pickle", ".pt", ".pth", ".bin", ".ckpt", ".h5", ".joblib")
BACKBONE_PREFIX = "backbone."
# safetensors metadata key: the backbone's tensor names in state_dict order (a JSON list).
ORDER_KEY = "imagefit.backbone_order"
# Weight files whose backbone digest was verified in this process: (real path, size, mtime, ctime, inode, digest).
# A changed file has a new ctime (which, unlike mtime, no one can set back) and is hashed again.
_verified: set[tuple[str, int, int, int, int, str]] = set()


def versions() -> dict[str, str]:
    """Versions of what produced a model (stored in its metadata)."""
    import timm

    return {
        "imagefit": __version__,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "python": platform.python_version(),
    }


def save_weights(path: Path, module: torch.nn.Module) -> None:
    """Write a module's state as safetensors, atomically.

    The file's metadata records the order of the backbone's tensors, so that
    :func:`verify_backbone` can recompute the backbone digest from the file
    alone (the digest hashes tensors in ``state_dict`` order, which the
    safetensors format does not keep).
    """
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    order = [k[len(BACKBONE_PREFIX) :] for k in state if k.startswith(BACKBONE_PREFIX)]
    atomic_write_bytes(path, save(state, metadata={ORDER_KEY: json.dumps(order)} if order else None))


def save_run(folder: Path, module: torch.nn.Module, meta: RunRecord | dict[str, Any]) -> None:
    """Write weights then metadata (so metadata never describes missing weights).

    The record is checked as loading checks it (one set of bounds) before
    anything is written: training never saves a model that ``load`` refuses.

    Raises:
        ArtifactError: the record has a value loading would refuse.
    """
    raw = meta.to_dict() if isinstance(meta, RunRecord) else dict(meta)
    raw = {"format_version": FORMAT_VERSION, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **raw}
    RunRecord.from_dict(raw, source=str(Path(folder) / META_FILE))
    folder.mkdir(parents=True, exist_ok=True)
    save_weights(folder / WEIGHTS_FILE, module)
    atomic_write_json(folder / META_FILE, raw)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save_int8_graph(graph: Path, out: Path, *, write: bool = True) -> dict[str, str]:
    """Copy a run's int8 graph into the run folder; returns the record's ``features`` entries naming it.

    Args:
        graph: The quantized graph the engine runs (in the cache).
        out: The run folder.
        write: False on the ranks of a distributed run that write nothing (the entries are still returned).
    """
    data = Path(graph).read_bytes()
    if write:
        atomic_write_bytes(Path(out) / INT8_GRAPH_FILE, data)
    return {"graph": INT8_GRAPH_FILE, "graph_sha256": _sha256(data)}


def restore_int8_graph(folder: Path, features: dict[str, str], cache_path: Path) -> None:
    """Put a run's int8 graph where the engine looks for it, checked against the record first.

    Raises:
        ArtifactError: the record names no graph, the file is missing, or it is not the file the record names.
    """
    name, want = features.get("graph"), features.get("graph_sha256")
    src = Path(folder) / (name or INT8_GRAPH_FILE)
    if not name or not want:
        raise ArtifactError(f"{folder}: the run's int8 features need their graph, and the record names none")
    if Path(name).name != name:
        raise ArtifactError(f"{folder}: features graph must be a file name in the run folder, received {name!r:.80}")
    try:
        data = src.read_bytes()
    except OSError:
        raise ArtifactError(f"{src}: missing; the run's int8 features cannot be computed without it") from None
    got = _sha256(data)
    if got != want:
        raise ArtifactError(f"{src}: content does not match the record (sha256 {got[:12]}..., recorded {want[:12]}...): changed or damaged")
    atomic_write_bytes(cache_path, data)


def read_record(folder: Path) -> RunRecord:
    """Read ``imagefit.json`` as a :class:`~imagefit.record.RunRecord`, every type and bound checked.

    Raises:
        ArtifactError: missing folder/file, bad JSON, wrong types or values out of bounds.
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
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path}: not valid JSON ({exc})") from None
    return RunRecord.from_dict(raw, source=str(path))


def read_meta(folder: Path) -> dict[str, Any]:
    """``imagefit.json`` checked as :func:`read_record` does, in its JSON form.

    Raises:
        ArtifactError: as :func:`read_record`.
    """
    return read_record(folder).to_dict()


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


def tensor_digest(tensors: Iterable[tuple[str, torch.Tensor]]) -> str:
    """Content hash of named tensors, in the given order (the backbone ``digest`` of imagefit.json).

    Must stay equal to :func:`imagefit.models.registry.state_digest` of the same tensors
    (tests/test_model.py checks it).
    """
    h = hashlib.blake2b(digest_size=12)
    for k, v in tensors:
        h.update(k.encode())
        t = v.detach().cpu().contiguous()
        h.update(str(t.dtype).encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().data)  # hashed in place, no copy
    return h.hexdigest()


def nonfinite_tensor(tensors: Iterable[tuple[str, torch.Tensor]]) -> str | None:
    """The name of the first floating-point tensor holding NaN or an infinity, else None."""
    for k, v in tensors:
        if v.is_floating_point() and not _finite(v):
            return k
    return None


def _finite(t: torch.Tensor) -> bool:
    # numpy for the dtypes it has: torch's per-call overhead made this 100x slower over a
    # backbone's few hundred small tensors; bfloat16 and the like go through torch.
    if t.dtype in (torch.float32, torch.float64, torch.float16):
        return bool(np.isfinite(t.detach().cpu().numpy()).all())
    return bool(torch.isfinite(t).all())


def verify_backbone(folder: Path, digest: str) -> bool:
    """Check that ``model.safetensors``'s backbone tensors hash to ``digest`` and are finite.

    The digest keys the feature cache and the ONNX graph cache: weights changed
    after training would otherwise be answered with the original model's cached
    features on one machine and with the changed weights on another. Each file
    is hashed once per process (remembered by path, size, mtime, ctime and inode).

    Returns:
        True when verified; False when the file predates the recorded tensor
        order (the caller then builds the backbone and compares
        ``state_digest``, see :func:`check_digest`).

    Raises:
        ArtifactError: a mismatch, a non-finite tensor, or an unreadable file.
    """
    path = Path(folder) / WEIGHTS_FILE
    try:
        st = path.stat()
        memo = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, digest)
        if memo in _verified:
            return True
        with safe_open(str(path), framework="pt") as f:
            order = (f.metadata() or {}).get(ORDER_KEY)
            if order is None:
                return False
            names = json.loads(order)
            in_file = sorted(k[len(BACKBONE_PREFIX) :] for k in f.keys() if k.startswith(BACKBONE_PREFIX))
            if not isinstance(names, list) or sorted(map(str, names)) != in_file:
                raise ArtifactError(f"{path}: the recorded backbone tensor names do not match the file's tensors")
            tensors = [(k, f.get_tensor(BACKBONE_PREFIX + k)) for k in names]
    except (SafetensorError, OSError, ValueError) as exc:
        raise ArtifactError(f"{path}: not a valid safetensors file ({exc})") from None
    bad = nonfinite_tensor(tensors)
    if bad is not None:
        raise ArtifactError(f"{path}: tensor {BACKBONE_PREFIX}{bad} holds NaN or infinite values")
    check_digest(path, digest, tensor_digest(tensors))
    _verified.add(memo)
    return True


def check_digest(path: Path, recorded: str, actual: str) -> None:
    """Refuse weights whose digest is not the one imagefit.json records."""
    if actual != recorded:
        raise ArtifactError(
            f"{path}: the backbone weights do not match {META_FILE} (digest {actual}, recorded {recorded}): "
            "the file was changed after training; restore it or train again"
        )
