"""Issue 5, part 4: damaged or hostile model files give a clear ArtifactError, never run code.

A crafted pickle whose ``__reduce__`` would create a marker file is placed as
``model.safetensors`` and as ``model.pt`` (and as a checkpoint); the marker
must never appear. JSON with wrong types or values, mismatched tensor shapes
and unknown backbones are refused with a message naming the problem, and the
CLI prints one ``error: ...`` line with a non-zero exit.
"""

from __future__ import annotations

import copy
import json
import os
import pickle
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

import imagefit
from imagefit.artifacts import META_FILE, WEIGHTS_FILE
from imagefit.cli import main
from imagefit.errors import ArtifactError, BadImageError

from .conftest import COLORS, noisy, train_tiny

MARKER = Path(os.environ.get("TMPDIR", "/tmp")) / f"imagefit-pwned-{os.getpid()}"


class Exploit:
    """Unpickling this creates MARKER: proof that code ran."""

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {MARKER}",))


def malicious_pickle() -> bytes:
    return pickle.dumps({"state_dict": Exploit()}, protocol=4)


@pytest.fixture(autouse=True)
def _no_marker():  # type: ignore[no-untyped-def]
    MARKER.unlink(missing_ok=True)
    yield
    created = MARKER.exists()
    MARKER.unlink(missing_ok=True)
    assert not created, "a pickle was unpickled: code ran"


def test_the_exploit_works_when_unpickled(tmp_path: Path) -> None:
    # Guard against a vacuous test: the payload really runs code if loaded with pickle.
    pickle.loads(malicious_pickle())
    assert MARKER.exists()
    MARKER.unlink()


@pytest.fixture(scope="module")
def good_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny(tmp_path_factory.mktemp("artdata"), 5)


@pytest.fixture
def run_copy(good_run: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(good_run, dst)
    return dst


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("photo") / "x.png"
    Image.fromarray(noisy(COLORS["red"], (48, 40), seed=3)).save(p)
    return p


def load_error(folder: Path) -> str:
    with pytest.raises(ArtifactError) as exc:
        imagefit.load(folder)
    return str(exc.value)


def cli_error(capsys: pytest.CaptureFixture[str], folder: Path, photo: Path) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["predict", str(folder), str(photo), "--out", str(folder.parent / "p.csv")])
    assert exc.value.code not in (0, None)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err
    return lines[0]


def test_good_run_loads(good_run: Path, photo: Path) -> None:
    assert len(imagefit.load(good_run).predict(photo)) == 1


# -- pickles ------------------------------------------------------------------------------
def test_pickle_as_model_safetensors(run_copy: Path, photo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (run_copy / WEIGHTS_FILE).write_bytes(malicious_pickle())
    msg = load_error(run_copy)
    assert WEIGHTS_FILE in msg and "not a valid safetensors file" in msg
    assert "not a valid safetensors file" in cli_error(capsys, run_copy, photo)


def test_pickle_as_model_pt(run_copy: Path, photo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (run_copy / WEIGHTS_FILE).unlink()
    (run_copy / "model.pt").write_bytes(malicious_pickle())
    (run_copy / "model.pkl").write_bytes(malicious_pickle())
    msg = load_error(run_copy)
    assert "model.safetensors is missing" in msg and "model.pt" in msg and "never loaded" in msg
    assert "never loaded" in cli_error(capsys, run_copy, photo)


def test_folder_with_only_a_pickle(tmp_path: Path, photo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "model.pt").write_bytes(malicious_pickle())
    msg = load_error(tmp_path)
    assert "not an imagefit run" in msg and "model.pt" in msg and "never loaded" in msg
    assert "not an imagefit run" in cli_error(capsys, tmp_path, photo)


def test_pickle_as_metadata(run_copy: Path) -> None:
    (run_copy / META_FILE).write_bytes(malicious_pickle())
    assert "not valid JSON" in load_error(run_copy)


def test_pickle_as_resume_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "data"
    for cls, color in COLORS.items():
        for i in range(4):
            p = root / cls / f"{cls}_{i}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(noisy(color, (48, 40), seed=i)).save(p)
    out = tmp_path / "run"
    imagefit.train(root, out=out, model="simple_cnn", strategy="full", epochs=1, batch_size=4, seed=0, workers=1)
    (out / META_FILE).unlink()  # pretend it was interrupted
    (out / "checkpoint" / "backbone.safetensors").write_bytes(malicious_pickle())
    with pytest.raises(ArtifactError, match="checkpoint .* is unreadable"):
        imagefit.train(None, out=out, resume=True)  # type: ignore[arg-type]
    # A checkpoint JSON with wrong types is a clear error too.
    shutil.copy(out / "checkpoint" / "best_model.safetensors", out / "checkpoint" / "backbone.safetensors")
    (out / "checkpoint" / "backbone.json").write_text(json.dumps({"epochs_done": "one", "optimizer": []}))
    with pytest.raises(ArtifactError):
        imagefit.train(None, out=out, resume=True)  # type: ignore[arg-type]


# -- weights that do not fit ------------------------------------------------------------------
def test_mismatched_tensor_shapes(run_copy: Path, photo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = load_file(str(run_copy / WEIGHTS_FILE))
    key = next(k for k in state if k.endswith("weight") and state[k].dim() == 2)
    state[key] = torch.zeros(state[key].shape[0] + 1, state[key].shape[1])
    save_file(state, str(run_copy / WEIGHTS_FILE))
    msg = load_error(run_copy)
    assert key in msg and "shape" in msg
    assert "shape" in cli_error(capsys, run_copy, photo)


def test_missing_and_extra_tensors(run_copy: Path) -> None:
    state = load_file(str(run_copy / WEIGHTS_FILE))
    state.pop(next(iter(state)))
    state["evil.extra"] = torch.zeros(1)
    save_file(state, str(run_copy / WEIGHTS_FILE))
    msg = load_error(run_copy)
    assert "do not match" in msg and "evil.extra" in msg


def test_missing_backbone_tensor_fails_when_the_backbone_is_built(run_copy: Path) -> None:
    # load() checks the head and the file's names; the backbone's tensors are checked, all of
    # them, when it is first built (a cached ONNX graph of the same weights never needs it).
    state = load_file(str(run_copy / WEIGHTS_FILE))
    key = next(k for k in state if k.startswith("backbone."))
    state.pop(key)
    save_file(state, str(run_copy / WEIGHTS_FILE))
    model = imagefit.load(run_copy)
    with pytest.raises(ArtifactError, match=rf"do not match the model \(1 missing, e\.g\. \['{re.escape(key)}'\]"):
        model.backbone


@pytest.mark.parametrize("cut", [0, 7, 100, -10])
def test_truncated_weights(run_copy: Path, cut: int) -> None:
    data = (run_copy / WEIGHTS_FILE).read_bytes()
    (run_copy / WEIGHTS_FILE).write_bytes(data[:cut])
    assert "safetensors" in load_error(run_copy)


def test_unknown_backbone(run_copy: Path, photo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    meta = json.loads((run_copy / META_FILE).read_text())
    meta["backbone"]["name"] = "no_such_backbone_xyz"
    (run_copy / META_FILE).write_text(json.dumps(meta))
    assert "no_such_backbone_xyz" in load_error(run_copy)
    assert "unknown model" in cli_error(capsys, run_copy, photo)


# -- JSON with wrong types or values ------------------------------------------------------------
WRONG_VALUES: list[Any] = [None, "x", -1, 0, 2.5, 1e12, True, [], {}, [1, 2], "../../../tmp/evil", float("nan")]


def _leaves(obj: Any, prefix: tuple = ()) -> list[tuple]:
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.append((*prefix, k))
            out.extend(_leaves(v, (*prefix, k)))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:3]):
            out.append((*prefix, i))
            out.extend(_leaves(v, (*prefix, i)))
    return out


def _set(obj: Any, path: tuple, value: Any) -> None:
    for k in path[:-1]:
        obj = obj[k]
    obj[path[-1]] = value


def test_metadata_with_wrong_types_or_values(run_copy: Path, photo: Path) -> None:
    """Every field the loader reads, set to every kind of wrong value: load fails with
    ArtifactError, or the model loads and predicts normally. Nothing else escapes."""
    meta_path = run_copy / META_FILE
    good = json.loads(meta_path.read_text())
    fields = [p for p in _leaves(good) if p[0] in ("classes", "backbone", "preprocess", "head", "temperature", "format_version")]
    fields += [("classes",), ("backbone",), ("preprocess",), ("head",)]
    tried = refused = 0
    for path in fields:
        for value in WRONG_VALUES:
            meta = copy.deepcopy(good)
            _set(meta, path, value)
            meta_path.write_text(json.dumps(meta))
            tried += 1
            try:
                model = imagefit.load(run_copy)
            except ArtifactError as exc:
                refused += 1
                assert str(exc) and "Traceback" not in str(exc)
                continue
            except Exception as exc:  # pragma: no cover - the failure being tested for
                pytest.fail(f"{'.'.join(map(str, path))} = {value!r}: {type(exc).__name__}: {exc}")
            try:
                preds = model.predict(photo)
            except BadImageError:
                pytest.fail(f"{'.'.join(map(str, path))} = {value!r}: the photo became unreadable")
            except Exception as exc:
                pytest.fail(f"{'.'.join(map(str, path))} = {value!r}: loads, but predict raises {type(exc).__name__}: {exc}")
            assert len(preds) == 1
    assert tried > 100 and refused > tried // 2
    # No file was written outside the run and the cache by a path-like digest.
    assert not Path("/tmp/evil").exists()


def test_not_a_run_folder(tmp_path: Path, photo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "not found" in load_error(tmp_path / "missing")
    assert "not found" in cli_error(capsys, tmp_path / "missing", photo)
    (tmp_path / "empty").mkdir()
    assert "imagefit.json is missing" in load_error(tmp_path / "empty")


# -- weights changed after training (issue 17) ------------------------------------------------------
def _rewrite_tensor(folder: Path, prefix: str, value: float) -> None:
    """Set one tensor under ``prefix`` to ``value`` everywhere, keeping the file's metadata."""
    from safetensors import safe_open

    path = folder / WEIGHTS_FILE
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
        state = {k: f.get_tensor(k) for k in f.keys()}
    key = next(k for k in state if k.startswith(prefix) and state[k].is_floating_point())
    state[key] = torch.full_like(state[key], value)
    save_file(state, str(path), metadata=metadata)


def test_tampered_backbone_is_one_error_line(run_copy: Path, photo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Before: a warm feature cache answered with the original model's features, a cold one with nan (exit 0).
    assert len(imagefit.load(run_copy).predict(photo)) == 1  # warms the cache under the recorded digest
    _rewrite_tensor(run_copy, "backbone.", 0.5)
    assert "do not match imagefit.json" in load_error(run_copy)
    assert "changed after training" in cli_error(capsys, run_copy, photo)
    assert not (run_copy.parent / "p.csv").exists()


@pytest.mark.parametrize(("prefix", "value"), [("backbone.", float("nan")), ("head.", float("inf")), ("head.", float("nan"))])
def test_non_finite_weights_are_one_error_line(
    run_copy: Path, photo: Path, capsys: pytest.CaptureFixture[str], prefix: str, value: float
) -> None:
    _rewrite_tensor(run_copy, prefix, value)
    assert f"tensor {prefix}" in load_error(run_copy) and "holds NaN or infinite values" in load_error(run_copy)
    assert "holds NaN or infinite values" in cli_error(capsys, run_copy, photo)
    assert not (run_copy.parent / "p.csv").exists()
