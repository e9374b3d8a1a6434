"""What the training run wires together: feature precision in the record, run records, data and search options."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import imagefit
from imagefit.config import RunConfig
from imagefit.engines.cpu import bf16_supported, importable
from imagefit.errors import ConfigError

RED, GREEN = (220, 40, 40), (40, 200, 60)


@pytest.fixture
def data(tmp_path: Path, make_img) -> Path:  # type: ignore[no-untyped-def]
    root = tmp_path / "data"
    for name, color in (("red", RED), ("green", GREEN)):
        for i in range(6):
            make_img(root / name / f"{name}_{i}.png", color, seed=900 + i + (50 if name == "red" else 0))
    return root


def _train(data: Path, out: Path, **options: object) -> dict:  # type: ignore[type-arg]
    run = imagefit.train(data, out=out, model="simple_cnn", epochs=3, progress=False, **options)  # type: ignore[arg-type]
    return json.loads((run.path / "imagefit.json").read_text())


def test_fp32_features_are_recorded_and_rebuilt_on_load(data: Path, tmp_path: Path) -> None:
    meta = _train(data, tmp_path / "run", precision="fp32")
    assert meta["features"]["precision"] == "fp32"
    assert meta["config"]["model"]["precision"] == "fp32"
    model = imagefit.load(tmp_path / "run")
    assert model.record.features == meta["features"]
    assert model.engine.precision == "fp32" and model.engine.kind == meta["features"]["engine"]
    assert len(model.predict(data / "red").records) == 6


_BF16_SCRIPT = """
import json, sys
import imagefit
data, out = sys.argv[1], sys.argv[2]
run = imagefit.train(data, out=out, model="simple_cnn", epochs=3, progress=False, precision="bf16")
meta = json.loads((run.path / "imagefit.json").read_text())
model = imagefit.load(out)
print(json.dumps({"features": meta["features"], "loaded": [model.engine.kind, model.engine.precision]}))
"""


@pytest.mark.skipif(not (bf16_supported() and importable("openvino")), reason="needs a CPU with bf16 and openvino")
def test_bf16_features_are_recorded_and_rebuilt_on_load(data: Path, tmp_path: Path) -> None:
    # In a child process: OpenVINO stays out of the pytest process (see tests/conftest.py).
    env = {k: v for k, v in os.environ.items() if k not in ("IMAGEFIT_ENGINE", "IMAGEFIT_PRECISION")}
    done = subprocess.run(
        [sys.executable, "-c", _BF16_SCRIPT, str(data), str(tmp_path / "run")], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["features"] == {"engine": "openvino", "precision": "bf16"}
    assert got["loaded"] == ["openvino", "bf16"]


def test_bf16_run_falls_back_to_fp32_with_a_note(data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    meta = _train(data, tmp_path / "run", precision="fp32")
    record = json.loads((tmp_path / "run" / "imagefit.json").read_text())
    record["features"] = {"engine": "openvino", "precision": "bf16"}
    (tmp_path / "run" / "imagefit.json").write_text(json.dumps(record))
    monkeypatch.delenv("IMAGEFIT_PRECISION", raising=False)
    monkeypatch.setattr("imagefit.engine.bf16_supported", lambda: False)
    model = imagefit.load(tmp_path / "run")
    capsys.readouterr()
    assert model.engine.precision == "fp32"
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bf16" in err and "fp32" in err
    assert meta["features"]["precision"] == "fp32"


def test_run_folder_has_tensorboard_events(data: Path, tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from imagefit.tracking import TB_DIR

    _train(data, tmp_path / "run", precision="fp32")
    events = list((tmp_path / "run" / TB_DIR).rglob("events.out.tfevents.*"))
    assert events
    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert any("loss" in t for t in tags), tags


def test_mlflow_without_the_package_is_one_clear_error(data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli) -> None:  # type: ignore[no-untyped-def]
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(ConfigError, match="mlflow package"):
        imagefit.train(data, out=tmp_path / "run", model="simple_cnn", epochs=1, progress=False, mlflow=True)
    assert not (tmp_path / "run").exists()
    code, _, text = cli("train", data, "--out", tmp_path / "run2", "--model", "simple_cnn", "--epochs", "1", "--mlflow")
    assert code == 2 and text.count("error:") == 1 and "pip install" in text
    # Not asked for: a stray MLFLOW_TRACKING_URI without the package changes nothing.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", str(tmp_path / "mlruns"))
    _train(data, tmp_path / "run3", precision="fp32")


@pytest.mark.parametrize(
    ("options", "pattern"),
    [
        ({"filename_label_regex": "(unclosed"}, r"invalid filename_label_regex: received '\(unclosed'"),
        ({"filename_label_regex": "^[a-z]+_"}, r"a group capturing the label"),
        ({"precision": "int4"}, r"invalid precision: received 'int4'; allowed: auto, fp32, bf16"),
        ({"budget": "soon"}, r"invalid budget: received 'soon'"),
        ({"budget": "0m"}, r"invalid budget"),
        ({"preset": "ultra"}, r"invalid preset: received 'ultra'; allowed: fast, good, best"),
    ],
)
def test_new_options_are_checked(options: dict[str, str], pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        RunConfig.from_options(**options)


def test_new_options_have_cli_flags(cli) -> None:  # type: ignore[no-untyped-def]
    from imagefit.cli._options import config_fields, flag

    flags = {flag(option) for option, _, _ in config_fields()}
    assert {"--precision", "--mlflow", "--filename-label-regex", "--budget", "--preset"} <= flags
    for args, message in (
        (("--precision", "int4"), "invalid precision"),
        (("--filename-label-regex", "(x"), "invalid filename_label_regex"),
        (("--budget", "soon"), "invalid budget"),
        (("--preset", "ultra"), "invalid preset"),
    ):
        code, _, text = cli("train", "x", *args)
        assert code == 2 and message in text, text


def test_filename_label_regex_labels_the_photos(tmp_path: Path, make_img) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "flat"
    for name, color in (("red", RED), ("green", GREEN)):
        for i in range(6):
            make_img(root / f"img-{i}_{name}.png", color, seed=300 + i + (50 if name == "red" else 0))
    run = imagefit.train(
        root,
        out=tmp_path / "run",
        model="simple_cnn",
        epochs=2,
        progress=False,
        precision="fp32",
        filename_label_regex=r".*_(?P<label>[a-z]+)\.",
    )
    meta = json.loads((run.path / "imagefit.json").read_text())
    assert meta["classes"] == ["green", "red"]
