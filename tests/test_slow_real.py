"""End to end on the real cats_and_dogs_filtered photos (slow: run with `-m slow`)."""

from __future__ import annotations

from pathlib import Path

import pytest

import imagefit

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def real_run(real_data: Path, tmp_path_factory: pytest.TempPathFactory) -> imagefit.Run:
    """The default recipe: lite0, linear, train/ -> validation/ (about 30 s on 2 cores)."""
    out = tmp_path_factory.mktemp("real") / "run"
    return imagefit.train(real_data / "train", val=real_data / "validation", out=out, seed=0)


def test_default_linear_reaches_99_percent(real_run: imagefit.Run) -> None:
    m = real_run.metrics
    assert m["n_images"] == 1000
    assert m["accuracy"] >= 0.99, m["accuracy"]
    assert m["log_loss"] < 0.05
    assert m["roc_auc"] > 0.998
    assert m["baseline"]["accuracy"] == pytest.approx(0.5)
    assert len(real_run.skipped) == 0


def test_predict_real_photos(real_run: imagefit.Run, real_data: Path) -> None:
    model = imagefit.load(real_run.path)
    photos = [real_data / "validation" / "cats" / f"cat.{i}.jpg" for i in (2100, 2200, 2300)]
    photos += [real_data / "validation" / "dogs" / f"dog.{i}.jpg" for i in (2100, 2200, 2300)]
    preds = model.predict(photos)
    assert [r["path"] for r in preds] == [str(p) for p in photos]
    assert [r["label"] for r in preds] == ["cats"] * 3 + ["dogs"] * 3
    assert all(r["probability"] > 0.9 for r in preds)
    tta = model.predict(photos, tta=True)
    assert [r["label"] for r in tta] == [r["label"] for r in preds]
