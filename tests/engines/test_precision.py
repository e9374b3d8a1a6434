"""bf16 features are accepted by their effect: accuracy and log loss on real photos match fp32's.

Each precision trains its own head on its own features and is scored on the same precision's
features, as a user's model would be. Kept short: cats_and_dogs_filtered only, heads fit on 100
training photos per class, scored on all 1,000 validation photos (clothing-small and the full
training set are measured by bench/precision.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

import imagefit
from imagefit.engines.cpu import bf16_supported


@pytest.mark.slow
def test_bf16_features_hold_accuracy_and_log_loss(real_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("openvino")
    if not bf16_supported():
        pytest.skip("this CPU has no bf16 instructions")
    train = tmp_path / "train"
    for cls in ("cats", "dogs"):
        (train / cls).mkdir(parents=True)
        for photo in sorted((real_data / "train" / cls).glob("*.jpg"))[:100]:
            (train / cls / photo.name).symlink_to(photo)
    monkeypatch.delenv("IMAGEFIT_ENGINE", raising=False)
    metrics = {}
    for precision in ("fp32", "bf16"):
        monkeypatch.setenv("IMAGEFIT_PRECISION", precision)
        run = imagefit.train(train, val=real_data / "validation", out=tmp_path / precision, seed=0)
        model = imagefit.load(run.path)
        metrics[precision] = model.evaluate(real_data / "validation")
        assert model.engine.precision == precision
    fp32, bf16 = metrics["fp32"], metrics["bf16"]
    print(f"fp32 {fp32['accuracy']:.4f} {fp32['log_loss']:.4f}; bf16 {bf16['accuracy']:.4f} {bf16['log_loss']:.4f}")
    assert fp32["accuracy"] > 0.95  # the comparison means something only for a working model
    assert bf16["accuracy"] >= fp32["accuracy"] - 0.002
    assert bf16["log_loss"] <= fp32["log_loss"] + 0.003
