"""End of training: the unknown-photo detector in the run folder, and the warning for validation photos copied from train."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image

import imagefit
from imagefit.ood import OOD_FILE


def test_run_has_a_detector_and_warns_about_a_copied_validation_photo(
    sample_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    shutil.copytree(sample_data, data)
    src = sorted((data / "train" / "cats").glob("*.jpg"))[0]
    with Image.open(src) as img:
        img.resize((img.width * 3 // 4, img.height * 3 // 4)).save(data / "val" / "cats" / "copy.jpg", quality=60)
    run = imagefit.train(data / "train", val=data / "val", out=tmp_path / "run", seed=0, unknown_accept=0.9, progress=True)
    err = capsys.readouterr()
    assert "validation accuracy is optimistic: 1 validation photo(s) have a copy in train" in err.out + err.err
    model = imagefit.load(run.path)
    assert (run.path / OOD_FILE).is_file() and model.record.ood is not None
    assert model.record.ood["accept"] == 0.9 and model.record.ood["n_val"] == 25
    preds = model.predict(data / "val")
    assert sum(r["unknown"] for r in preds) <= 3  # about 10% of the validation photos, by construction


def test_unknown_accept_is_checked() -> None:
    from imagefit.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown_accept"):
        imagefit.train("nowhere", unknown_accept=1.5)
