"""The CLI: exit codes and one-line errors, and each command's output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from imagefit.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich wraps at 80 columns when not on a terminal; widen it so assertions see whole lines."""
    from imagefit.ui import console

    monkeypatch.setattr(console, "_width", 400)


def run_cli(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    """Call ``imagefit.cli.main`` in-process; returns (exit code, stdout, stderr)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    code = info.value.code
    return (0 if code is None else int(code)), out, err


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {lines!r}"
    assert lines[0].startswith("error: ")
    assert len(lines[0]) > len("error: ") + 5
    return lines[0]


# -- errors: one line on stderr, meaningful exit codes -------------------------------------
def test_missing_folder(capsys, tmp_path: Path) -> None:
    code, out, err = run_cli(capsys, "train", tmp_path / "nope", "--out", tmp_path / "run")
    assert code == 1
    line = one_error_line(err)
    assert "data not found" in line and "nope" in line
    assert not (tmp_path / "run").exists()


def test_empty_class_folder(capsys, tmp_path: Path, image_folder) -> None:
    data = image_folder(n_per_class=2)
    (data / "blue").mkdir()
    code, _, err = run_cli(capsys, "train", data, "--out", tmp_path / "run")
    assert code == 1
    assert "class folder 'blue'" in one_error_line(err) and "empty" in err
    assert not (tmp_path / "run").exists()  # bad data fails before the run folder is made


def test_unknown_model(capsys, tmp_path: Path, image_folder) -> None:
    data = image_folder(n_per_class=2)
    code, _, err = run_cli(capsys, "train", data, "--model", "resnet9000", "--out", tmp_path / "run")
    assert code == 1
    line = one_error_line(err)
    assert "unknown model 'resnet9000'" in line and "lite0" in line
    assert not (tmp_path / "run").exists()


def test_bad_flag(capsys) -> None:
    code, _, err = run_cli(capsys, "train", "data", "--bogus-flag", "1")
    assert code == 2
    assert "--bogus-flag" in one_error_line(err)


def test_bad_choice(capsys, tmp_path: Path) -> None:
    code, _, err = run_cli(capsys, "train", tmp_path, "--strategy", "magic")
    assert code == 2
    line = one_error_line(err)
    assert "magic" in line and "linear" in line


def test_bad_number(capsys, tmp_path: Path) -> None:
    code, _, err = run_cli(capsys, "train", tmp_path, "--epochs", "many")
    assert code == 2
    assert "--epochs" in one_error_line(err)


def test_config_error_exit_code(capsys, tmp_path: Path, image_folder) -> None:
    data = image_folder(n_per_class=2)
    code, _, err = run_cli(capsys, "train", data, "--val-split", "0.95", "--out", tmp_path / "run")
    assert code == 2
    line = one_error_line(err)
    assert "val_split" in line and "received 0.95" in line and "allowed" in line


def test_unknown_command(capsys) -> None:
    code, _, err = run_cli(capsys, "frobnicate")
    assert code == 2
    assert "frobnicate" in one_error_line(err)


def test_missing_run_folder(capsys, tmp_path: Path) -> None:
    code, _, err = run_cli(capsys, "predict", tmp_path / "norun", tmp_path)
    assert code == 1
    assert "run folder not found" in one_error_line(err)


def test_no_arguments_shows_help(capsys) -> None:
    code, out, err = run_cli(capsys)
    assert code in (0, 2)
    assert "Usage" in out + err and "train" in out + err
    assert not any(ln.strip() == "error:" for ln in err.splitlines())  # no empty error line


def test_help(capsys) -> None:
    code, out, _ = run_cli(capsys, "--help")
    assert code == 0
    for cmd in ("train", "evaluate", "predict", "inspect", "models", "demo"):
        assert cmd in out
    code, out, _ = run_cli(capsys, "train", "--help")
    assert code == 0 and "--val-split" in out and "--no-pretrained" in out


def test_entry_point_subprocess(tmp_path: Path) -> None:
    env = {**os.environ, "IMAGEFIT_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    p = subprocess.run(
        [sys.executable, "-m", "imagefit", "train", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=tmp_path,
    )
    assert p.returncode == 1
    assert p.stderr.strip().splitlines() == [f"error: data not found: {tmp_path / 'missing'}"]
    assert "Traceback" not in p.stderr


# -- commands ----------------------------------------------------------------------------------
def test_models(capsys) -> None:
    code, out, err = run_cli(capsys, "models")
    assert code == 0
    text = out + err
    rows = {ln.split("│")[1].strip(): ln for ln in text.splitlines() if ln.count("│") >= 5}
    assert {"lite0", "lite1", "lite2", "simple_cnn"} <= set(rows)
    assert "yes" in rows["lite0"] and "224" in rows["lite0"]
    assert "240" in rows["lite1"] and "260" in rows["lite2"]
    assert "scratch" in rows["simple_cnn"]
    assert "timm" in text


def test_inspect(capsys, tmp_path: Path, image_folder) -> None:
    data = image_folder(n_per_class=3, classes=("red", "green", "blue"))
    (data / "red" / "broken.jpg").write_bytes(b"garbage")
    code, out, err = run_cli(capsys, "inspect", data)
    assert code == 0
    text = out + err
    assert "class folders" in text and "['blue', 'green', 'red']" in text
    assert "9/10 readable" in text
    assert "'red': 4" in text
    assert "broken.jpg" in text and "not an image" in text
    assert "48x40" in text


def test_inspect_json(capsys, tmp_path: Path, image_folder) -> None:
    data = image_folder(n_per_class=2)
    code, out, _ = run_cli(capsys, "inspect", data, "--json")
    assert code == 0
    rep = json.loads(out)
    assert rep["layout"] == "class folders" and rep["classes"] == ["green", "red"]
    s = rep["splits"]["train"]
    assert s["n_files"] == s["n_readable"] == 4 and s["counts"] == {"green": 2, "red": 2}
    assert s["imbalance_ratio"] == 1.0 and s["unreadable"] == []
    assert s["size"]["min"] == [48, 40]


def test_inspect_train_val_layout_and_missing(capsys, sample_data: Path, tmp_path: Path) -> None:
    code, out, _ = run_cli(capsys, "inspect", sample_data, "--json")
    assert code == 0
    rep = json.loads(out)
    assert set(rep["splits"]) == {"train", "val"}
    assert rep["splits"]["val"]["counts"] == {"cats": 12, "dogs": 12}
    code, _, err = run_cli(capsys, "inspect", tmp_path / "missing")
    assert code == 1 and "not found" in one_error_line(err)


def test_train_predict_evaluate(capsys, tmp_path: Path, image_folder) -> None:
    data = image_folder(n_per_class=5)
    run = tmp_path / "run"
    code, out, err = run_cli(capsys, "train", data, "--out", run, "--epochs", "5", "--val-split", "0.4")
    assert code == 0, err
    assert (run / "model.safetensors").is_file() and (run / "imagefit.json").is_file()
    assert "validation: accuracy" in out + err and "run folder" in out + err

    preds = tmp_path / "preds.csv"
    code, out, err = run_cli(capsys, "predict", run, data / "red", "--out", preds)
    assert code == 0, err
    lines = preds.read_text().splitlines()
    assert lines[0].startswith("path,label,prob_green,prob_red")
    assert len(lines) == 6 and all(",red," in ln for ln in lines[1:])

    metrics = tmp_path / "eval.json"
    code, out, err = run_cli(capsys, "evaluate", run, data, "--out", metrics)
    assert code == 0, err
    m = json.loads(metrics.read_text())
    assert m["accuracy"] == 1.0 and "log_loss" in m
    assert "accuracy 1.0000" in out + err

    # A second train into the same folder is refused with one line.
    code, _, err = run_cli(capsys, "train", data, "--out", run)
    assert code == 1 and "already holds a run" in one_error_line(err)


def test_evaluate_bad_run(capsys, tmp_path: Path, image_folder) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.pkl").write_bytes(b"\x80\x04 not really")
    code, _, err = run_cli(capsys, "evaluate", run, image_folder(n_per_class=2))
    assert code == 1
    assert "pickled files are never loaded" in one_error_line(err)


def test_demo(capsys, tmp_path: Path) -> None:
    out_dir = tmp_path / "demo"
    code, out, err = run_cli(capsys, "demo", "--out", out_dir)
    assert code == 0, err
    text = out + err
    assert "validation: accuracy" in text
    assert (out_dir / "model.safetensors").is_file() and (out_dir / "predictions.csv").is_file()
    rows = (out_dir / "predictions.csv").read_text().splitlines()
    assert len(rows) == 25  # header + the 24 validation photos


# -- train's options come from the config dataclasses --------------------------------------------
def test_every_config_field_has_a_train_flag() -> None:
    """Adding a config field without a flag (or a flag without a field) fails here."""
    import dataclasses

    import typer.main

    from imagefit.cli import app
    from imagefit.config import DataConfig, ModelConfig, TrainConfig

    train = typer.main.get_command(app).commands["train"]  # type: ignore[attr-defined]
    flags = {opt for p in train.params if p.param_type_name == "option" for opt in p.opts}
    own = {"--val", "--out", "--resume", "--device", "--help"}
    fields = {
        "--" + ("model" if (cls, f.name) == (ModelConfig, "name") else f.name).replace("_", "-")
        for cls in (DataConfig, ModelConfig, TrainConfig)
        for f in dataclasses.fields(cls)
    }
    assert flags - own == fields
    # Today's flag names keep working.
    for old in ("--val-split", "--class-weights", "--labels-from-filename", "--no-pretrained", "--img-size", "--batch-size", "--lr"):
        assert old in flags or old in {o for p in train.params for o in p.secondary_opts}
    for new in ("--monitor", "--patience", "--lr-patience", "--lr-factor", "--min-lr", "--head-epochs"):
        assert new in flags


def test_train_flags_reach_the_config(capsys, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import imagefit

    seen: dict[str, object] = {}

    def fake_train(data: object, **kw: object) -> None:
        seen.update(kw)
        raise imagefit.ImagefitError("stop here")

    monkeypatch.setattr(imagefit, "train", fake_train)
    code, _, err = run_cli(
        capsys,
        "train",
        tmp_path,
        "--monitor",
        "val_accuracy",
        "--lr-patience",
        "3",
        "--min-lr",
        "1e-5",
        "--class-weights",
        "--no-pretrained",
    )
    assert code == 1 and "stop here" in err
    assert seen["monitor"] == "val_accuracy" and seen["lr_patience"] == 3 and seen["min_lr"] == 1e-5
    assert seen["class_weights"] is True and seen["pretrained"] is False and seen["model"] == "auto"


def test_bad_config_value_is_invalid_line(capsys, tmp_path: Path) -> None:
    code, _, err = run_cli(capsys, "train", tmp_path, "--monitor", "speed")
    assert code == 2
    assert one_error_line(err) == "error: invalid monitor: received 'speed'; allowed: val_loss, val_accuracy, loss, accuracy"


# -- start-up: no heavy import where none is needed -------------------------------------------------
HEAVY = ("torch", "timm", "matplotlib", "sklearn", "onnxruntime", "fastapi", "torchvision")


def _imports_after(argv: list[str], tmp_path: Path) -> tuple[int, list[str], str]:
    """Run ``imagefit.cli.main(argv)`` in a fresh interpreter; which heavy modules were imported.

    The package ``__init__`` is bypassed (it loads the whole Python API, torch included):
    this checks the CLI's own imports, which is what keeps `--help` and usage errors fast.
    """
    code = (
        "import sys, types, json; pkg = types.ModuleType('imagefit'); pkg.__path__ = [sys.argv[1]]; sys.modules['imagefit'] = pkg\n"
        "from imagefit.cli import main\n"
        "try:\n    main(json.loads(sys.argv[2]))\nexcept SystemExit as e:\n    rc = e.code or 0\n"
        f"print(json.dumps([rc, sorted(m for m in {HEAVY!r} if m in sys.modules)]))"
    )
    p = subprocess.run(
        [sys.executable, "-c", code, str(ROOT / "src" / "imagefit"), json.dumps(argv)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "COLUMNS": "200"},
    )
    rc, mods = json.loads(p.stdout.strip().splitlines()[-1])
    return rc, mods, p.stderr


def test_help_and_usage_errors_import_nothing_heavy(tmp_path: Path, sample_data: Path) -> None:
    assert _imports_after(["--help"], tmp_path)[:2] == (0, [])
    assert _imports_after(["train", "--help"], tmp_path)[:2] == (0, [])
    rc, mods, err = _imports_after(["train", str(tmp_path), "--strategy", "magic"], tmp_path)
    assert (rc, mods) == (2, []) and "invalid strategy" in err
    rc, mods, err = _imports_after(["inspect", str(sample_data)], tmp_path)
    assert (rc, mods) == (0, []), err
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, mods, err = _imports_after(["inspect", str(empty)], tmp_path)
    assert rc == 1 and mods == [] and err.startswith("error: ")


def test_models_summary(capsys) -> None:
    code, out, err = run_cli(capsys, "models", "lite0")
    assert code == 0, err
    assert "input: 224x224" in out and "features: 1280" in out and "center crop 224" in out
    assert "weights:" in out and "parameters:" in out
    rows = [ln for ln in out.splitlines() if ln.count("│") >= 5]
    assert len(rows) > 5 and "trained" in rows[-1] and "frozen" in rows[0]
    code, out, _ = run_cli(capsys, "models", "lite0", "--json")
    s = json.loads(out)
    assert s["params"] >= sum(b["params"] for b in s["blocks"]) > 0 and 0 < s["finetune_params"] < s["params"]
    code, _, err = run_cli(capsys, "models", "resnet9000")
    assert code == 1 and "unknown model" in one_error_line(err)


def test_inspect_augment_preview(capsys, tmp_path: Path, image_folder) -> None:
    data = image_folder(n_per_class=2)
    code, out, err = run_cli(capsys, "inspect", data, "--augment", "heavy", "--preview", tmp_path / "aug.png", "--model", "simple_cnn")
    assert code == 0, err
    assert (tmp_path / "aug.png").is_file() and f"preview: {tmp_path / 'aug.png'}" in out
    code, _, err = run_cli(capsys, "inspect", data, "--augment", "wild")
    assert code == 2 and "invalid augment" in one_error_line(err)


def test_inspect_lists_exact_duplicates(capsys, tmp_path: Path, image_folder) -> None:  # type: ignore[no-untyped-def]
    import shutil

    data = image_folder(n_per_class=3)
    shutil.copy(data / "red" / "red_0.png", data / "green" / "copy.png")
    code, out, err = run_cli(capsys, "inspect", data, "--report", tmp_path / "inspect.html")
    assert code == 0, err
    assert "duplicates (exact" in out and "1 pair(s): train~train 1 exact + 0 near" in out
    assert "red_0.png" in out and "copy.png" in out
    assert (tmp_path / "inspect-duplicates.png").is_file()
    assert "<h2>Duplicates</h2>" in (tmp_path / "inspect.html").read_text()
    code, out, _ = run_cli(capsys, "inspect", data, "--json")
    d = json.loads(out)["duplicates"]
    assert d["counts"] == {"train~train": {"exact": 1, "near": 0}} and d["near_searched"] is False


def test_predict_unknown_options(capsys, tmp_path: Path, trained_run: Path, sample_data: Path) -> None:  # type: ignore[no-untyped-def]
    import csv

    photos = sample_data / "val" / "cats"
    code, out, err = run_cli(capsys, "predict", trained_run, photos, "--out", tmp_path / "p.csv")
    assert code == 0, err
    assert "look unlike the training photos" in out
    with open(tmp_path / "p.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["unknown"] for r in rows} <= {"true", "false"} and all(r["unknown_score"] for r in rows)
    code, out, err = run_cli(capsys, "predict", trained_run, photos, "--out", tmp_path / "q.csv", "--unknown", "off")
    assert code == 0, err
    with open(tmp_path / "q.csv", newline="") as f:
        assert {r["unknown"] for r in csv.DictReader(f)} == {""}
    code, out, err = run_cli(capsys, "predict", trained_run, photos, "--out", tmp_path / "t.csv", "--unknown-threshold", "0")
    assert code == 0 and "12 of 12 photo(s) look unlike" in out
    code, _, err = run_cli(capsys, "predict", trained_run, photos, "--unknown", "maybe")
    assert code == 2 and "invalid --unknown" in one_error_line(err)
    code, _, err = run_cli(capsys, "predict", trained_run, photos, "--unknown-accept", "1.5")
    assert code == 2 and "invalid unknown_accept" in one_error_line(err)
