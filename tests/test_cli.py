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
