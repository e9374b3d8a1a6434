"""The training orchestrator's phases: resolved settings in the record, a smaller input size, a run that fails mid-way."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

import imagefit
from imagefit.errors import ArtifactError, OutputError

RED, GREEN = (220, 40, 40), (40, 200, 60)

# Not `import imagefit.train.run`: `imagefit.train` is also the name of the train() function.
run_mod = importlib.import_module("imagefit.train.run")
finish_mod = importlib.import_module("imagefit.train.finish")


@pytest.fixture
def data(tmp_path: Path, make_img) -> Path:  # type: ignore[no-untyped-def]
    root = tmp_path / "data"
    for name, color in (("red", RED), ("green", GREEN)):
        for i in range(6):
            make_img(root / name / f"{name}_{i}.png", color, seed=700 + i + (50 if name == "red" else 0))
    return root


def test_img_size_96_trains_predicts_and_is_recorded(data: Path, tmp_path: Path, make_img) -> None:  # type: ignore[no-untyped-def]
    run = imagefit.train(
        data, out=tmp_path / "run", model="simple_cnn", strategy="full", img_size=96, epochs=2, batch_size=4, progress=False
    )
    meta = json.loads((run.path / "imagefit.json").read_text())
    assert meta["preprocess"]["input_size"] == 96
    # The values actually used, not the config's Nones.
    images = meta["settings"]["images"]
    assert images == {"epochs": 2, "lr": pytest.approx(1e-3 * 4 / 32), "batch_size": 4}
    assert meta["settings"]["head"] is None and meta["settings"]["preprocess"]["input_size"] == 96
    model = imagefit.load(run.path)
    assert model.preprocess.input_size == 96
    preds = model.predict([make_img(tmp_path / "new" / "r.png", RED, seed=1), make_img(tmp_path / "new" / "g.png", GREEN, seed=2)])
    assert len(preds) == 2 and all(r["label"] in ("red", "green") for r in preds.records)


def test_linear_settings_recorded(data: Path, tmp_path: Path) -> None:
    run = imagefit.train(data, out=tmp_path / "run", model="simple_cnn", pretrained=False, epochs=3, progress=False)
    settings = json.loads((run.path / "imagefit.json").read_text())["settings"]
    assert settings["head"] == {"epochs": 3, "lr": 0.003, "batch_size": 128} and settings["images"] is None


def test_failed_run_leaves_no_run_and_resumes(data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "run"

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("calibration crashed")

    monkeypatch.setattr(finish_mod, "calibrate", boom)
    with pytest.raises(RuntimeError, match="calibration crashed"):
        imagefit.train(data, out=out, model="simple_cnn", pretrained=False, epochs=2, progress=False)
    # Not a run: no imagefit.json, no weights; but resumable.
    assert not (out / "imagefit.json").exists() and not (out / "model.safetensors").exists()
    assert (out / "checkpoint" / "run_state.json").is_file()
    with pytest.raises(ArtifactError, match="imagefit.json is missing"):
        imagefit.load(out)
    # Starting a new run there is refused; --resume finishes it.
    with pytest.raises(OutputError, match="already holds a run"):
        imagefit.train(data, out=out, model="simple_cnn", pretrained=False, epochs=2, progress=False)
    monkeypatch.undo()
    run = imagefit.train(None, out=out, resume=True, progress=False)  # type: ignore[arg-type]
    assert (run.path / "imagefit.json").is_file() and imagefit.load(run.path).classes == ["green", "red"]


def test_imagefit_json_is_written_last(data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    order: list[str] = []
    real_report, real_save_run = finish_mod.write_report, finish_mod.save_run
    monkeypatch.setattr(finish_mod, "write_report", lambda *a, **k: (order.append("report"), real_report(*a, **k))[1])
    monkeypatch.setattr(finish_mod, "save_run", lambda *a, **k: (order.append("imagefit.json"), real_save_run(*a, **k))[1])
    imagefit.train(data, out=tmp_path / "run", model="simple_cnn", pretrained=False, epochs=1, progress=False)
    assert order == ["report", "imagefit.json"]
