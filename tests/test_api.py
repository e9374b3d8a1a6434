"""The Python API end to end on tiny generated images: train, load, predict, evaluate, cache, resume."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import imagefit
from imagefit.errors import ConfigError, DataError, ImagefitError, ModelError, OutputError
from imagefit.features import Features

RED, GREEN, BLUE = (220, 40, 40), (40, 200, 60), (40, 60, 220)


@pytest.fixture
def count_extracted(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Records how many photos each feature pass sent through the backbone (0 = all from the cache)."""
    import importlib

    # Not `import imagefit.train.run`: `imagefit.train` is also the name of the train() function.
    run_mod = importlib.import_module("imagefit.train.run")
    counts: list[int] = []
    real = run_mod.extract

    def spy(*args, **kwargs) -> Features:  # type: ignore[no-untyped-def]
        out = real(*args, **kwargs)
        counts.append(out.extracted)
        return out

    monkeypatch.setattr(run_mod, "extract", spy)
    return counts


def _colour_folder(root: Path, make_img, n: int, seed0: int, classes: dict[str, tuple[int, int, int]] | None = None) -> Path:
    """Class folders of noisy single-colour photos; ``seed0`` makes their bytes unique to a test."""
    for name, color in (classes or {"red": RED, "green": GREEN}).items():
        for i in range(n):
            make_img(root / name / f"{name}_{i}.png", color, seed=seed0 + i)
    return root


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> imagefit.Run:
    """lite0 linear on 2 x 8 generated photos with a stratified val split (module-scoped: trained once)."""
    import numpy as np
    from PIL import Image

    root = tmp_path_factory.mktemp("tiny") / "data"
    rng = np.random.default_rng(42)
    for name, color in (("red", RED), ("green", GREEN)):
        (root / name).mkdir(parents=True)
        for i in range(8):
            arr = np.clip(np.array(color)[None, None] + rng.normal(0, 25, (40, 48, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(root / name / f"{name}_{i}.png")
    out = root.parent / "run"
    return imagefit.train(root, out=out, val_split=0.25, seed=0, epochs=15)


def test_train_returns_a_run(tiny_run: imagefit.Run) -> None:
    run = tiny_run
    assert isinstance(run, imagefit.Run)
    assert run.path.is_dir()
    for name in ("model.safetensors", "imagefit.json", "history.csv", "metrics.json"):
        assert (run.path / name).is_file(), name
    assert not list(run.path.glob("*.pt")) and not list(run.path.glob("*.pkl"))
    assert run.metrics["n_images"] == 4  # 25% of 8 per class
    assert run.metrics["accuracy"] == 1.0
    assert run.metrics["log_loss"] < run.metrics["baseline"]["log_loss"]
    assert 1 <= len(run.history) <= 15
    assert run.config.train.epochs == 15 and run.config.data.val_split == 0.25
    assert len(run.skipped) == 0
    meta = json.loads((run.path / "imagefit.json").read_text())
    assert meta["classes"] == ["green", "red"]
    assert meta["data"]["n_train"] == 12 and meta["data"]["n_val"] == 4
    assert meta["backbone"]["name"] == "lite0" and meta["head"]["out_features"] == 1
    with (run.path / "history.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(run.history)
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "lr"} <= set(rows[0])


def test_load_predict_records(tiny_run: imagefit.Run, tmp_path: Path, make_img) -> None:
    model = imagefit.load(tiny_run.path)
    assert isinstance(model, imagefit.Model) and model.classes == ["green", "red"]
    red = make_img(tmp_path / "new" / "r.png", RED, seed=901)
    green = make_img(tmp_path / "new" / "sub" / "g.jpg", GREEN, seed=902)
    preds = model.predict([red, green])
    assert len(preds) == 2
    recs = preds.records
    assert [r["path"] for r in recs] == [str(red), str(green)]
    assert [r["label"] for r in recs] == ["red", "green"]
    for r in recs:
        assert set(r) >= {"path", "label", "probability", "probabilities"}
        assert set(r["probabilities"]) == {"green", "red"}
        assert sum(r["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert r["probability"] == max(r["probabilities"].values()) > 0.5
    # A folder is searched recursively; a single path works too.
    assert [r["label"] for r in model.predict(tmp_path / "new")] == ["red", "green"]
    out = preds.to_csv(tmp_path / "p.csv")
    with out.open() as fh:
        rows = list(csv.reader(fh))
    assert rows[0][:4] == ["path", "label", "prob_green", "prob_red"] and len(rows) == 3


def test_predict_tta_and_unreadable(tiny_run: imagefit.Run, tmp_path: Path, make_img) -> None:
    model = imagefit.load(tiny_run.path)
    good = make_img(tmp_path / "ok.png", RED, seed=903)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    preds = model.predict([good, bad], tta=True)
    assert [r["path"] for r in preds] == [str(good)]
    assert preds.skipped.as_list() == [{"path": str(bad), "reason": preds.skipped.items[0][1]}]
    assert "truncated" in preds.skipped.items[0][1] or "corrupt" in preds.skipped.items[0][1]
    plain = model.predict([good])
    assert preds[0]["label"] == plain[0]["label"] == "red"


def test_evaluate(tiny_run: imagefit.Run, tmp_path: Path, make_img) -> None:
    model = imagefit.load(tiny_run.path)
    data = _colour_folder(tmp_path / "eval", make_img, 3, seed0=950)
    m = model.evaluate(data)
    assert m["accuracy"] == 1.0
    assert 0 <= m["log_loss"] < 0.69
    assert m["n_images"] == 6
    assert m["confusion_matrix"] == [[3, 0], [0, 3]]
    assert "baseline" in m and "roc_auc" in m
    assert m["n_skipped"] == 0 and m["tta"] is False


def test_evaluate_unknown_class_fails(tiny_run: imagefit.Run, tmp_path: Path, make_img) -> None:
    model = imagefit.load(tiny_run.path)
    data = _colour_folder(tmp_path / "eval", make_img, 2, seed0=960, classes={"red": RED, "blue": BLUE})
    with pytest.raises(DataError, match="blue"):
        model.evaluate(data)


def test_second_train_uses_feature_cache(tmp_path: Path, make_img, count_extracted: list[int]) -> None:
    data = _colour_folder(tmp_path / "data", make_img, 5, seed0=700)  # bytes no other test makes
    first = imagefit.train(data, out=tmp_path / "a", val_split=0.2, seed=0, epochs=3)
    assert sum(count_extracted) == 10  # every photo through the backbone once
    count_extracted.clear()
    second = imagefit.train(data, out=tmp_path / "b", val_split=0.2, seed=1, epochs=5, lr=1e-3)
    assert count_extracted and sum(count_extracted) == 0  # all from the cache
    assert first.metrics["n_images"] == second.metrics["n_images"] == 2
    # Renaming a photo keeps its cache entry (keyed by content, not by name).
    (data / "red" / "red_0.png").rename(data / "red" / "renamed.png")
    count_extracted.clear()
    imagefit.train(data, out=tmp_path / "c", val_split=0.2, seed=0, epochs=2)
    assert sum(count_extracted) == 0


def test_resume_on_finished_run(tiny_run: imagefit.Run, tmp_path: Path) -> None:
    import shutil

    path = tmp_path / "copy"
    shutil.copytree(tiny_run.path, path)
    before = imagefit.load(path)
    again = imagefit.train(None, out=path, resume=True)  # data and options come from the run folder
    assert again.path == path
    assert again.metrics["accuracy"] == pytest.approx(tiny_run.metrics["accuracy"])
    assert again.metrics["log_loss"] == pytest.approx(tiny_run.metrics["log_loss"], rel=1e-4)
    assert again.config == tiny_run.config
    after = imagefit.load(path)
    for k, v in before.head.state_dict().items():
        assert torch.allclose(after.head.state_dict()[k], v), k


def test_resume_without_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no resumable run"):
        imagefit.train(None, out=tmp_path / "nothing", resume=True)


def test_existing_run_folder_refused(tiny_run: imagefit.Run, tmp_path: Path, make_img) -> None:
    data = _colour_folder(tmp_path / "d", make_img, 3, seed0=0)
    with pytest.raises(OutputError, match="already holds a run.*--resume"):
        imagefit.train(data, out=tiny_run.path)


def test_bad_files_are_skipped_and_listed(tmp_path: Path, make_img) -> None:
    data = _colour_folder(tmp_path / "data", make_img, 5, seed0=800)
    (data / "red" / "broken.jpg").write_bytes(b"not a jpeg at all")
    (data / "green" / "empty.png").write_bytes(b"")
    run = imagefit.train(data, out=tmp_path / "run", val_split=0.2, seed=0, epochs=3)
    reasons = {Path(p).name: r for p, r in run.skipped.items}
    assert set(reasons) == {"broken.jpg", "empty.png"}
    assert reasons["empty.png"] == "empty file"
    assert "not an image" in reasons["broken.jpg"]
    meta = json.loads((run.path / "imagefit.json").read_text())
    assert {Path(s["path"]).name for s in meta["skipped"]} == {"broken.jpg", "empty.png"}


def test_explicit_val_and_train_val_layout(tmp_path: Path, make_img) -> None:
    _colour_folder(tmp_path / "d" / "train", make_img, 4, seed0=820)
    _colour_folder(tmp_path / "d" / "validation", make_img, 2, seed0=830)
    run = imagefit.train(tmp_path / "d", out=tmp_path / "r1", epochs=2)
    assert run.metrics["n_images"] == 4  # the layout's own validation folder, no split
    run2 = imagefit.train(tmp_path / "d" / "train", val=tmp_path / "d" / "validation", out=tmp_path / "r2", epochs=2)
    assert run2.metrics["n_images"] == 4


@pytest.mark.parametrize(
    ("options", "error", "pattern"),
    [
        ({"model": "no_such_backbone"}, ModelError, "unknown model 'no_such_backbone'"),
        ({"strategy": "magic"}, ConfigError, "strategy"),
        ({"learning_rate": 0.1}, ConfigError, "invalid option: received 'learning_rate'"),
        # val_split 0 means a final fit on all photos; that needs a head on cached features.
        ({"val_split": 0.0, "strategy": "finetune"}, ConfigError, "val_split"),
    ],
)
def test_bad_options_fail_before_any_work(tmp_path: Path, image_folder, options: dict, error: type, pattern: str) -> None:
    data = image_folder(n_per_class=3)
    out = tmp_path / "never"
    with pytest.raises(error, match=pattern):
        imagefit.train(data, out=out, **options)
    assert not out.exists()


def test_all_errors_share_the_base_class() -> None:
    for e in (ConfigError, DataError, ModelError, OutputError):
        assert issubclass(e, ImagefitError)


def test_multiclass_run(tmp_path: Path, make_img) -> None:
    data = _colour_folder(tmp_path / "data", make_img, 4, seed0=850, classes={"red": RED, "green": GREEN, "blue": BLUE})
    run = imagefit.train(data, out=tmp_path / "run", val_split=0.25, seed=0, epochs=10)
    meta = json.loads((run.path / "imagefit.json").read_text())
    assert meta["head"]["out_features"] == 3
    model = imagefit.load(run.path)
    preds = model.predict([data / "blue" / "blue_0.png"])
    assert len(preds[0]["probabilities"]) == 3
    assert np.isclose(sum(preds[0]["probabilities"].values()), 1.0, atol=1e-5)
