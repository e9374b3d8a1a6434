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
