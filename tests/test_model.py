"""imagefit.model: load a run folder, verify its weights, predict and evaluate; never a non-finite answer.

Runs are written with :func:`save_run` from an untrained ``simple_cnn`` (no training, no
downloads), so every case builds in milliseconds.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import imagefit
from imagefit import artifacts
from imagefit.artifacts import ORDER_KEY, WEIGHTS_FILE, save_run, tensor_digest, verify_backbone
from imagefit.errors import ArtifactError, DataError
from imagefit.model import Model
from imagefit.models import create_model, get_spec
from imagefit.models.registry import state_digest


def _classifier(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model("simple_cnn", 2, pretrained=False, hidden=0, dropout=0.0)


def _meta(module: torch.nn.Module, **extra: Any) -> dict[str, Any]:
    spec = get_spec("simple_cnn")
    return {
        "classes": ["green", "red"],
        "backbone": {"name": "simple_cnn", "num_features": spec.num_features, "digest": state_digest(module.backbone)},  # type: ignore[arg-type]
        "preprocess": spec.preprocess.to_dict(),
        "head": {"hidden": 0, "dropout": 0.0, "out_features": 1},
        "temperature": 1.0,
        "train_counts": {"green": 6, "red": 6},
        **extra,
    }


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    m = _classifier()
    save_run(tmp_path / "run", m, _meta(m))
    return tmp_path / "run"


def _edit_weights(folder: Path, edit: Callable[[dict[str, torch.Tensor]], None], keep_metadata: bool = True) -> None:
    """Rewrite model.safetensors with ``edit`` applied, keeping (or dropping) the file's metadata."""
    path = folder / WEIGHTS_FILE
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
        state = {k: f.get_tensor(k) for k in f.keys()}
    edit(state)
    save_file(state, str(path), metadata=metadata if keep_metadata else None)


def _first_backbone_weight(state: dict[str, torch.Tensor]) -> str:
    return next(k for k in state if k.startswith("backbone.") and k.endswith("weight"))


def _perturb(state: dict[str, torch.Tensor]) -> None:
    key = _first_backbone_weight(state)
    state[key] = state[key] + 0.5


# -- the happy path ------------------------------------------------------------------------------
def test_load_predict_evaluate(run_dir: Path, image_folder: Callable[..., Path]) -> None:
    data = image_folder(4)
    model = imagefit.load(run_dir)
    assert isinstance(model, Model) and model.classes == ["green", "red"]
    assert model.record.backbone.name == "simple_cnn" and model.meta["backbone"]["name"] == "simple_cnn"
    preds = model.predict(data)
    assert len(preds) == 8
    assert preds.probs is not None and np.allclose(preds.probs.sum(1), 1.0, atol=1e-5)
    metrics = model.evaluate(data)
    assert 0.0 <= metrics["accuracy"] <= 1.0 and np.isfinite(metrics["log_loss"])
    assert metrics["n_skipped"] == 0


def test_evaluate_needs_labels(run_dir: Path, image_folder: Callable[..., Path]) -> None:
    data = image_folder(2)
    from imagefit.data.discover import ImageSet

    unlabeled = ImageSet(paths=sorted(data.rglob("*.png")), labels=[], classes=[], source=str(data))
    with pytest.raises(DataError, match="evaluation needs labeled images"):
        imagefit.load(run_dir).evaluate(unlabeled)


def test_temperature_scales_probabilities(run_dir: Path) -> None:
    model = imagefit.load(run_dir)
    feats = np.random.default_rng(0).normal(size=(5, 1, model.record.backbone.num_features)).astype(np.float32)
    p1, p3 = model.head_probs(feats, 1.0), model.head_probs(feats, 3.0)
    # A higher temperature pulls every probability towards 1/2, never past it.
    assert np.all(np.abs(p3 - 0.5) <= np.abs(p1 - 0.5) + 1e-6)
    assert model.head_probs(feats[:0]).shape == (0, 2)


# -- the backbone digest is checked against the weights (issue 17) --------------------------------
def test_file_digest_equals_state_digest(run_dir: Path) -> None:
    """The digest recomputed from the file alone is the one training records (registry.state_digest)."""
    m = _classifier()
    with safe_open(str(run_dir / WEIGHTS_FILE), framework="pt") as f:
        order = json.loads(f.metadata()[ORDER_KEY])
        tensors = [(k, f.get_tensor("backbone." + k)) for k in order]
    assert order == list(m.backbone.state_dict())  # type: ignore[union-attr]
    assert tensor_digest(tensors) == state_digest(m.backbone)  # type: ignore[arg-type]


def test_tampered_weights_refused_with_a_warm_cache(run_dir: Path, image_folder: Callable[..., Path]) -> None:
    data = image_folder(2)
    before = imagefit.load(run_dir).predict(data)  # fills the feature cache under the recorded digest
    assert len(before) == 4
    _edit_weights(run_dir, _perturb)
    with pytest.raises(ArtifactError, match=r"backbone weights do not match imagefit\.json .*changed after training"):
        imagefit.load(run_dir)


def test_tampered_weights_refused_with_a_fresh_cache(run_dir: Path) -> None:
    _edit_weights(run_dir, _perturb)
    with pytest.raises(ArtifactError, match="backbone weights do not match"):
        imagefit.load(run_dir)


def test_tampered_weights_without_recorded_order_refused_before_any_answer(run_dir: Path, image_folder: Callable[..., Path]) -> None:
    """A file written before the tensor order was recorded: verified when the backbone is built,
    which happens before the feature cache or an ONNX graph keyed by the digest is used."""
    data = image_folder(2)
    imagefit.load(run_dir).predict(data)  # warm cache
    _edit_weights(run_dir, _perturb, keep_metadata=False)
    model = imagefit.load(run_dir)  # lazy: the backbone is not built yet
    with pytest.raises(ArtifactError, match="backbone weights do not match"):
        model.predict(data)
    with pytest.raises(ArtifactError, match="backbone weights do not match"):
        model.evaluate(data)


def test_untampered_file_without_recorded_order_still_loads(run_dir: Path, image_folder: Callable[..., Path]) -> None:
    _edit_weights(run_dir, lambda state: None, keep_metadata=False)
    assert len(imagefit.load(run_dir).predict(image_folder(2))) == 4


def test_edited_tensor_order_refused(run_dir: Path) -> None:
    path = run_dir / WEIGHTS_FILE
    with safe_open(str(path), framework="pt") as f:
        state = {k: f.get_tensor(k) for k in f.keys()}

        order = json.loads(f.metadata()[ORDER_KEY])
    save_file(state, str(path), metadata={ORDER_KEY: json.dumps(order[::-1])})
    with pytest.raises(ArtifactError, match="backbone weights do not match"):
        imagefit.load(run_dir)
    save_file(state, str(path), metadata={ORDER_KEY: json.dumps(order[1:])})
    with pytest.raises(ArtifactError, match="recorded backbone tensor names do not match"):
        imagefit.load(run_dir)


def test_each_file_is_hashed_once(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = artifacts.tensor_digest
    monkeypatch.setattr(artifacts, "tensor_digest", lambda tensors: calls.append(1) or real(tensors))
    digest = imagefit.load(run_dir).record.backbone.digest
    assert digest is not None
    imagefit.load(run_dir)
    assert verify_backbone(run_dir, digest) and len(calls) == 1
    # A rewrite (even with the same bytes) changes ctime: the file is hashed again.
    _edit_weights(run_dir, lambda state: None)
    imagefit.load(run_dir)
    assert len(calls) == 2


# -- non-finite weights and outputs never answer (issue 17) ---------------------------------------
def _nan_run(tmp_path: Path, where: str) -> Path:
    m = _classifier()
    with torch.no_grad():
        params = dict(m.named_parameters())
        key = next(k for k in params if k.startswith(where))
        params[key].view(-1)[0] = float("nan")
    save_run(tmp_path / where, m, _meta(m))  # the digest matches: a run that diverged, not a tampered one
    return tmp_path / where


def test_nan_backbone_weights_refused(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=r"tensor backbone\.\S+ holds NaN or infinite values"):
        imagefit.load(_nan_run(tmp_path, "backbone."))


def test_nan_head_weights_refused(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=r"tensor head\.\S+ holds NaN or infinite values"):
        imagefit.load(_nan_run(tmp_path, "head."))


def test_infinite_head_bias_refused(run_dir: Path) -> None:
    def edit(state: dict[str, torch.Tensor]) -> None:
        key = next(k for k in state if k.startswith("head.") and k.endswith("bias"))
        state[key] = torch.full_like(state[key], float("inf"))

    _edit_weights(run_dir, edit)
    with pytest.raises(ArtifactError, match=r"tensor head\.\S*bias holds NaN or infinite values"):
        imagefit.load(run_dir)


def test_non_finite_features_give_no_answer(run_dir: Path) -> None:
    model = imagefit.load(run_dir)
    feats = np.zeros((3, 1, model.record.backbone.num_features), np.float32)
    feats[1, 0, 5] = np.nan
    with pytest.raises(ArtifactError, match=r"NaN or infinite features for 1 of 3 photo"):
        model.head_probs(feats)


def test_non_finite_head_outputs_give_no_answer(run_dir: Path) -> None:
    model = imagefit.load(run_dir)
    with torch.no_grad():
        for p in model.head.parameters():
            p.fill_(3e38)  # finite weights whose outputs overflow
    feats = np.full((2, 1, model.record.backbone.num_features), 1e3, np.float32)
    with pytest.raises(ArtifactError, match="head gave NaN or infinite outputs"):
        model.head_probs(feats)


def test_non_finite_probabilities_give_no_answer(run_dir: Path) -> None:
    model = imagefit.load(run_dir)
    feats = np.ones((2, 1, model.record.backbone.num_features), np.float32)
    with pytest.raises(ArtifactError, match="temperature .* gives NaN or infinite probabilities"):
        model.head_probs(feats, float("nan"))


def test_load_and_predict_import_no_training_libraries(trained_run: Path, sample_data: Path) -> None:
    """Predicting from a run with a cached graph never imports timm, sklearn or matplotlib (seconds of start-up each)."""
    import os
    import subprocess
    import sys

    photo = next((sample_data / "val").rglob("*.jpg"))
    code = (
        "import sys, imagefit\n"
        "m = imagefit.load(sys.argv[1]); p = m.predict([sys.argv[2]])\n"
        "assert len(p.records) == 1, p\n"
        "print(sorted(x for x in ('timm', 'sklearn', 'matplotlib', 'torchvision') if x in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(trained_run), str(photo)], capture_output=True, text=True, timeout=300, env=dict(os.environ)
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_recorded_tta_is_the_default(trained_run: Path, sample_data: Path, tmp_path: Path) -> None:
    """A run saved with flip averaging predicts and evaluates with it unless the caller says otherwise."""
    from _runs import edited_run

    photos = sorted((sample_data / "val").rglob("*.jpg"))[:6]
    plain = imagefit.load(trained_run)
    tta = imagefit.load(edited_run(trained_run, tmp_path / "tta", tta=True))
    assert (plain.tta, tta.tta) == (False, True)
    flipped = plain.predict(photos, tta=True).probs
    assert np.allclose(tta.predict(photos).probs, flipped, atol=1e-6)
    assert np.allclose(tta.predict(photos, tta=False).probs, plain.predict(photos).probs, atol=1e-6)
    assert not np.allclose(flipped, plain.predict(photos).probs, atol=1e-4)  # the mirror image does change them
    assert tta.evaluate(sample_data)["tta"] is True and tta.evaluate(sample_data, tta=False)["tta"] is False


def test_tta_must_be_a_boolean(trained_run: Path, tmp_path: Path) -> None:
    from _runs import edited_run

    with pytest.raises(ArtifactError, match="tta must be bool, received str"):
        imagefit.load(edited_run(trained_run, tmp_path / "bad", tta="yes"))
