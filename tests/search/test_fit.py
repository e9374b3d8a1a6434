"""``--budget`` / ``--preset``: the search's winner saved as a normal run."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

import imagefit
from imagefit.errors import ConfigError
from imagefit.search.fit import LEADERBOARD_FILE, PRESET_BUDGETS, budget_seconds


def test_budget_seconds() -> None:
    assert budget_seconds("90s", None) == 90 and budget_seconds("5m", "best") == 300
    assert budget_seconds(None, "good") == PRESET_BUDGETS["good"]
    with pytest.raises(ConfigError, match="invalid preset"):
        budget_seconds(None, "ultra")


def test_budget_run_is_a_normal_run(tmp_path: Path, make_img, cli) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "data"
    for name, color in (("red", (220, 40, 40)), ("green", (40, 200, 60))):
        for i in range(10):
            make_img(root / name / f"{name}_{i}.png", color, seed=i + (50 if name == "red" else 0))
    code, out, text = cli("train", root, "--out", tmp_path / "run", "--budget", "5s")
    assert code == 0, text
    run = tmp_path / "run"
    rows = list(csv.DictReader((run / LEADERBOARD_FILE).open()))
    assert rows and rows[0]["rank"] == "1" and rows[0]["status"] == "ok"
    meta = json.loads((run / "imagefit.json").read_text())
    assert meta["search"]["best"] == rows[0]["name"] and meta["search"]["budget_s"] == 5
    assert meta["config"]["train"]["budget"] == "5s" and meta["head"]["hidden"] == 0
    # The winner's flip averaging is saved with it, so prediction can average as the search scored it.
    # The key is written only when set (older files stay unchanged).
    assert meta.get("tta", False) is (rows[0]["tta"] == "True")
    model = imagefit.load(run)
    assert model.tta is (rows[0]["tta"] == "True")
    # 16 training photos: the winner is chosen by cross-validated log loss (the small-set rule), so one
    # photo of the 20 may go wrong; what matters here is that the saved winner loads and predicts.
    assert model.evaluate(root)["accuracy"] >= 0.9
    assert {r["label"] for r in model.predict(root / "red").records} == {"red"}
    assert model.engine.precision == meta["features"]["precision"]


def test_budget_refuses_finetune(tmp_path: Path, make_img) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "data"
    for name, color in (("red", (220, 40, 40)), ("green", (40, 200, 60))):
        for i in range(3):
            make_img(root / name / f"{name}_{i}.png", color, seed=i)
    with pytest.raises(ConfigError, match="invalid strategy with --budget or --preset"):
        imagefit.train(root, out=tmp_path / "run", budget="5s", strategy="finetune", progress=False)


def _red_and_green(root: Path, make_img) -> Path:  # type: ignore[no-untyped-def]
    """Six red and six green photos, one class folder each."""
    for name, color in (("red", (220, 40, 40)), ("green", (40, 200, 60))):
        for i in range(6):
            make_img(root / name / f"{name}_{i}.png", color, seed=i + (50 if name == "red" else 0))
    return root


def test_a_tta_winner_is_saved_with_tta(tmp_path: Path, make_img, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from imagefit.search import fit as fit_mod

    real = fit_mod.search

    def tta_winner(*args, **kwargs):  # type: ignore[no-untyped-def]
        result = real(*args, **kwargs)
        result.best.entry.tta = True  # as if flip averaging had scored best on validation
        return result

    monkeypatch.setattr(fit_mod, "search", tta_winner)
    root = _red_and_green(tmp_path / "data", make_img)
    run = imagefit.train(root, out=tmp_path / "run", budget="5s", progress=False)
    meta = json.loads((run.path / "imagefit.json").read_text())
    assert meta["tta"] is True
    model = imagefit.load(run.path)
    assert model.temperature > 0
    assert model.evaluate(root, tta=True)["tta"] is True


def test_a_composite_winner_is_saved_as_an_ordinary_run(tmp_path: Path, make_img, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from imagefit.search import fit as fit_mod
    from imagefit.search import runner

    def composite_only(*args, **kwargs):  # type: ignore[no-untyped-def]
        # The composite as the one backbone (then at a higher resolution): whichever wins is a composite.
        # That the search builds it from the backbones it ran is tested with fakes in test_runner.py.
        return runner.search(*args, **{**kwargs, "backbones": ["lite0+lite1"]})

    monkeypatch.setattr(fit_mod, "search", composite_only)
    root = _red_and_green(tmp_path / "data", make_img)
    run = imagefit.train(root, out=tmp_path / "run", budget="10m", progress=False)
    meta = json.loads((run.path / "imagefit.json").read_text())
    assert meta["search"]["rows"][0]["sources"].startswith("lite0+lite1")
    assert meta["config"]["model"]["name"] == "lite0+lite1" and meta["backbone"]["num_features"] == 2 * 1280
    model = imagefit.load(run.path)
    assert model.record.preprocess.input_size == (meta["config"]["data"]["img_size"] or 240)
    # The saved backbone computes the features the search scored its head on.
    assert model.evaluate(root)["accuracy"] >= 0.9
    assert {r["label"] for r in model.predict(root / "green").records} == {"green"}


def _lite0_only(monkeypatch):  # type: ignore[no-untyped-def]
    from imagefit.search import fit as fit_mod
    from imagefit.search import runner

    def lite0(*args, **kwargs):  # type: ignore[no-untyped-def]
        return runner.search(*args, **{**kwargs, "backbones": ["lite0"], "higher_res": False})

    monkeypatch.setattr(fit_mod, "search", lite0)


def test_fine_tuning_is_a_gpu_candidate_skipped_on_a_cpu(tmp_path: Path, make_img, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _lite0_only(monkeypatch)
    root = _red_and_green(tmp_path / "data", make_img)
    run = imagefit.train(root, out=tmp_path / "run", budget="10m", progress=False)
    rows = {r["name"]: r for r in imagefit.load(run.path).record.extra["search"]["rows"]}
    assert rows["lite0 finetune"]["status"] == "skipped" and "GPU-only" in rows["lite0 finetune"]["note"]


@pytest.mark.parametrize("wins", [True, False])
def test_the_fine_tuned_candidate_is_saved_when_chosen(tmp_path: Path, make_img, monkeypatch, wins: bool) -> None:  # type: ignore[no-untyped-def]
    """The whole fine-tuning path on a CPU (``ON_CPU``), the choice forced both ways: a loadable run either way."""
    from imagefit.search import tune

    _lite0_only(monkeypatch)
    monkeypatch.setattr(tune, "ON_CPU", True)
    monkeypatch.setattr(tune, "_finetune_wins", lambda *a: wins)
    root = _red_and_green(tmp_path / "data", make_img)
    val = _red_and_green(tmp_path / "val", make_img)
    run = imagefit.train(root, val=val, out=tmp_path / "run", budget="10m", epochs=2, progress=False)
    model = imagefit.load(run.path)
    record = model.record
    rows = {r["name"]: r for r in record.extra["search"]["rows"]}
    assert rows["lite0 finetune"]["status"] == "ok" and rows["lite0 finetune"]["val_log_loss"] is not None
    assert (record.extra["search"]["best"] == "lite0 finetune") is wins
    assert record.config.train.strategy == ("finetune" if wins else "linear") and record.backbone.name == "lite0"
    assert record.ood is not None and (run.path / "leaderboard.csv").is_file()
    # The saved weights are the ones scored: evaluating the validation photos gives the run's own figures.
    assert model.evaluate(val)["log_loss"] == pytest.approx(run.metrics["log_loss"], rel=1e-2, abs=1e-4)
    assert {r["label"] for r in model.predict(root / "green").records} == {"green"}
