"""imagefit.predict: the CSV, the output checks, clipping and the photo grid, without the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import imagefit
from imagefit.errors import ConfigError, DataError
from imagefit.predict import Predictions, check_output, make_records, predict_files, write_prediction_grid


def _preds(paths: list[Path], probs: list[list[float]]) -> Predictions:
    p = np.array(probs)
    return Predictions(
        make_records(paths, np.arange(len(paths)), p, ["cat", "dog"]), ["cat", "dog"], probs=p, indices=np.arange(len(paths))
    )


def test_check_output(tmp_path: Path, make_img) -> None:  # type: ignore[no-untyped-def]
    photo = make_img(tmp_path / "in" / "a.jpg", (200, 0, 0))
    listed = tmp_path / "list.csv"
    listed.write_text("x")
    assert check_output(tmp_path / "new.csv", [tmp_path / "in"]) == tmp_path / "new.csv"
    assert check_output(tmp_path / "in" / "p.csv", [tmp_path / "in"]) == tmp_path / "in" / "p.csv"  # beside the photos is fine
    for bad, why in [(photo, "image file name"), (tmp_path / "in", "folder"), (tmp_path / "x.PNG", "image file name")]:
        with pytest.raises(ConfigError, match=why):
            check_output(bad, [tmp_path / "in"])
    (tmp_path / "notes.txt").write_text("keep")
    with pytest.raises(ConfigError, match="non-CSV"):
        check_output(tmp_path / "notes.txt", [tmp_path / "in"])
    with pytest.raises(ConfigError, match="one of the inputs"):
        check_output(listed, [listed, tmp_path / "in"])


def test_clipped() -> None:
    preds = _preds([Path("a.jpg"), Path("b.jpg")], [[1.0, 0.0], [0.3, 0.7]])
    c = preds.clipped(0.01)
    assert c.probabilities().min() == pytest.approx(0.01) and c.probabilities().max() == pytest.approx(0.99)
    assert c[0]["probability"] == pytest.approx(0.99) and c[1]["label"] == "dog"
    assert preds.probabilities().max() == 1.0  # the original is unchanged


def test_prediction_grid(tmp_path: Path, make_img) -> None:  # type: ignore[no-untyped-def]
    paths = [make_img(tmp_path / f"{i}.jpg", (40 * i, 100, 100)) for i in range(7)]
    out = write_prediction_grid(_preds(paths, [[0.9, 0.1]] * 6 + [[0.45, 0.55]]), tmp_path / "grid.png", cols=5)
    with Image.open(out) as img:
        assert img.format == "PNG" and img.width > img.height > 200  # 2 rows of 5


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> imagefit.Model:
    from conftest import COLORS, make_image

    base = tmp_path_factory.mktemp("predict")
    for c in ("red", "green"):
        for i in range(4):
            make_image(base / "data" / c / f"{i}.png", COLORS[c], seed=i)
    return imagefit.load(imagefit.train(base / "data", out=base / "run", model="simple_cnn", epochs=1, seed=0).path)


def test_predict_files(tiny_model: imagefit.Model, tmp_path: Path, make_img) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "photos"
    for i in range(3):
        make_img(folder / f"{i + 1}.jpg", (220, 40, 40), seed=i)
    (folder / "9.jpg").write_bytes(b"broken")
    res = predict_files(tiny_model, [folder], tmp_path / "p.csv", clip=0.01, report=True)
    assert res.rows == 3 and res.csv.read_text().count("\n") == 5  # header, 3 photos, 1 skipped
    assert res.report == tmp_path / "p.png" and res.report.is_file()
    assert res.predictions.probabilities().max() <= 0.99
    sub = predict_files(tiny_model, [folder], tmp_path / "s.csv", kaggle=True)
    assert sub.rows == 4 and sub.missing == [folder / "9.jpg"]
    assert sub.csv.read_text().splitlines()[0] == "id,label"


def test_predict_files_nothing_readable(tiny_model: imagefit.Model, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="nothing to predict"):
        predict_files(tiny_model, [tmp_path / "notes.txt"], tmp_path / "p.csv")
    assert not (tmp_path / "p.csv").exists()


def _with_detector(run: Path, dest: Path, train: Path, val: Path) -> imagefit.Model:
    """A copy of ``run`` with an unknown-photo detector fit on ``train`` and ``val`` features (what training writes)."""
    import json
    import shutil

    from imagefit.data.discover import list_images
    from imagefit.data.load import SkipLog
    from imagefit.ood import fit_detector

    shutil.copytree(run, dest)
    model = imagefit.load(dest)
    _, ftr = model.features(list_images([train]), SkipLog())
    _, fva = model.features(list_images([val]), SkipLog())
    info = fit_detector(ftr[:, 0], fva[:, 0]).save(dest)
    meta = json.loads((dest / "imagefit.json").read_text())
    meta["ood"] = info.to_dict()
    (dest / "imagefit.json").write_text(json.dumps(meta))
    return imagefit.load(dest)


@pytest.fixture(scope="module")
def ood_model(trained_run: Path, sample_data: Path, tmp_path_factory: pytest.TempPathFactory) -> imagefit.Model:
    """The lite0 sample run with a detector (a random CNN's features say little about what is unknown)."""
    return _with_detector(trained_run, tmp_path_factory.mktemp("ood") / "run", sample_data / "train", sample_data / "val")


def _csv(path: Path) -> list[dict[str, str]]:
    import csv

    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_csv_unknown_columns(ood_model: imagefit.Model, tmp_path: Path, make_img) -> None:  # type: ignore[no-untyped-def]
    make_img(tmp_path / "in" / "1.png", (220, 40, 40), seed=3)
    (tmp_path / "in" / "2.jpg").write_bytes(b"broken")
    res = predict_files(ood_model, [tmp_path / "in"], tmp_path / "p.csv")
    rows = _csv(res.csv)
    assert list(rows[0])[-3:] == ["unknown", "unknown_score", "error"]
    good = [r for r in rows if not r["error"]]
    assert good[0]["unknown"] in ("true", "false") and 0.0 <= float(good[0]["unknown_score"]) <= 2.0
    rec = res.predictions[0]
    assert rec["unknown"] == (rec["unknown_score"] > res.predictions.unknown_threshold)
    assert [r["unknown"] for r in rows if r["error"]] == [""]
    sub = predict_files(ood_model, [tmp_path / "in"], tmp_path / "s.csv", kaggle=True)
    assert sub.csv.read_text().splitlines()[0] == "id,label"


def test_unknown_threshold_and_off(ood_model: imagefit.Model, tmp_path: Path, make_img) -> None:  # type: ignore[no-untyped-def]
    make_img(tmp_path / "in" / "red.png", (220, 40, 40), seed=3)
    make_img(tmp_path / "in" / "odd.png", (128, 128, 128), seed=5)
    assert all(r["unknown"] for r in ood_model.predict(tmp_path / "in", unknown_threshold=0.0))
    assert not any(r["unknown"] for r in ood_model.predict(tmp_path / "in", unknown_threshold=2.0))
    strict = ood_model.predict(tmp_path / "in", unknown_accept=1.0)
    assert strict.unknown_threshold == pytest.approx(float(ood_model.unknown_detector.val_scores.max()))  # type: ignore[union-attr]
    off = predict_files(ood_model, [tmp_path / "in"], tmp_path / "p.csv", unknown=False)
    assert all(r["unknown"] is None and r["unknown_score"] is None for r in off.predictions)
    assert {r["unknown"] for r in _csv(off.csv)} == {""}
    for bad in ({"unknown_threshold": -1.0}, {"unknown_accept": 0.0}, {"unknown_threshold": 0.5, "unknown_accept": 0.9}):
        with pytest.raises(ConfigError, match="unknown"):
            predict_files(ood_model, [tmp_path / "in"], tmp_path / "p.csv", **bad)  # type: ignore[arg-type]


def test_run_without_detector_still_predicts(tiny_model: imagefit.Model, tmp_path: Path, make_img) -> None:  # type: ignore[no-untyped-def]
    import json
    import shutil

    shutil.copytree(tiny_model.path, tmp_path / "old")
    meta = json.loads((tmp_path / "old" / "imagefit.json").read_text())
    meta.pop("ood", None)
    (tmp_path / "old" / "imagefit.json").write_text(json.dumps(meta))
    (tmp_path / "old" / "ood.safetensors").unlink(missing_ok=True)
    old = imagefit.load(tmp_path / "old")
    make_img(tmp_path / "in" / "red.png", (220, 40, 40), seed=3)
    res = predict_files(old, [tmp_path / "in"], tmp_path / "p.csv", unknown_threshold=0.5)
    assert old.unknown_detector is None and res.predictions.unknown_scores is None
    assert res.predictions[0]["unknown"] is None and _csv(res.csv)[0]["unknown"] == ""


def test_damaged_detector_is_refused(ood_model: imagefit.Model, tmp_path: Path, make_img) -> None:  # type: ignore[no-untyped-def]
    import shutil

    from imagefit.errors import ArtifactError

    shutil.copytree(ood_model.path, tmp_path / "run")
    data = bytearray((tmp_path / "run" / "ood.safetensors").read_bytes())
    data[-1] ^= 1
    (tmp_path / "run" / "ood.safetensors").write_bytes(bytes(data))
    make_img(tmp_path / "in" / "red.png", (220, 40, 40), seed=3)
    with pytest.raises(ArtifactError, match="digest"):
        imagefit.load(tmp_path / "run").predict(tmp_path / "in")


@pytest.mark.slow
def test_cats_dogs_model_flags_clothing_photos(trained_run: Path, real_data: Path) -> None:
    """The sample cats/dogs run answers "unknown" for real clothing photos and not for most real cats and dogs."""
    clothing = sorted((real_data.parent / "clothing-small" / "test" / "shoes").glob("*"))[:10]
    pets = sorted((real_data / "validation" / "cats").glob("*.jpg"))[20:30]
    model = imagefit.load(trained_run)
    flagged = [r["unknown"] for r in model.predict(clothing)]
    kept = [not r["unknown"] for r in model.predict(pets)]
    assert len(flagged) == 10 and sum(flagged) >= 9
    assert sum(kept) >= 7
