"""Exported files: the same probabilities as predict, metadata that says how to use them, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import imagefit
from imagefit.data.load import decode_array, read_bytes
from imagefit.data.transforms import Preprocess
from imagefit.errors import ArtifactError, ConfigError, OutputError
from imagefit.export import FORMATS, export_model
from imagefit.export.resize import resize_graph

from .conftest import exported


@pytest.fixture
def fp32_predict(monkeypatch: pytest.MonkeyPatch) -> None:
    """predict in fp32, what the exported file computes: bf16 engines (OpenVINO on AMX CPUs) move probabilities."""
    monkeypatch.setenv("IMAGEFIT_PRECISION", "fp32")


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_metadata_describes_the_model(onnx_file: Path, trained_run: Path) -> None:
    model = imagefit.load(trained_run)
    s = _session(onnx_file)
    meta = s.get_modelmeta().custom_metadata_map
    assert json.loads(meta["imagefit.classes"]) == model.classes
    assert Preprocess.from_dict(json.loads(meta["imagefit.preprocess"])) == model.preprocess
    assert meta["imagefit.version"] == imagefit.__version__
    assert float(meta["imagefit.temperature"]) == model.temperature
    size = model.preprocess.input_size
    (inp,), (out,) = s.get_inputs(), s.get_outputs()
    assert (inp.name, inp.type, inp.shape[1:]) == ("pixels", "tensor(uint8)", [size, size, 3])
    assert (out.name, out.shape[1:]) == ("probabilities", [len(model.classes)])
    assert f"center-crop {size}x{size}" in meta["imagefit.input"]


@pytest.mark.slow
@pytest.mark.usefixtures("fp32_predict")
def test_onnx_gives_predicts_probabilities(onnx_file: Path, trained_run: Path, real_photos: list[Path]) -> None:
    model = imagefit.load(trained_run)
    expected = model.predict(real_photos).probs
    x = np.stack([model.preprocess.pixels(decode_array(read_bytes(p), draft_size=model.preprocess.resize_size)) for p in real_photos])
    got = _session(onnx_file).run(None, {"pixels": x})[0]
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() < 1e-3
    assert np.allclose(got.sum(1), 1, atol=1e-5)


@pytest.mark.slow
@pytest.mark.usefixtures("fp32_predict")
def test_any_size_graph_resizes_as_predict_does(any_size_file: Path, trained_run: Path, real_photos: list[Path]) -> None:
    model = imagefit.load(trained_run)
    expected = model.predict(real_photos).probs
    s = _session(any_size_file)
    assert s.get_inputs()[0].name == "image"
    sizes = set()
    for p, want in zip(real_photos, expected):
        arr = decode_array(read_bytes(p), draft_size=model.preprocess.resize_size)
        sizes.add(arr.shape[:2])
        got = s.run(None, {"image": arr[None]})[0][0]
        assert np.abs(got - want).max() < 1e-3, p.name
    assert len(sizes) > 5  # many sizes and aspect ratios went through the same graph


def test_resize_graph_matches_the_eval_transform(make_img: object, tmp_path: Path) -> None:
    """Pillow's two antialiased passes in ONNX: pixels within 2 levels of imagefit's, nearly all equal."""
    pre = Preprocess(64, (0.5,) * 3, (0.5,) * 3, "bicubic", 0.875)
    s = ort.InferenceSession(resize_graph(pre).SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for h, w in ((97, 131), (300, 73), (73, 73), (640, 480)):
        smooth = rng.integers(0, 256, (h // 8 + 2, w // 8 + 2, 3)).repeat(8, 0).repeat(8, 1)[:h, :w].astype(np.uint8)
        got = s.run(None, {"image": smooth[None]})[0][0]
        want = pre.pixels(smooth)
        diff = np.abs(got.astype(int) - want.astype(int))
        assert got.shape == want.shape == (64, 64, 3)
        assert diff.max() <= 2 and (diff > 0).mean() < 0.02, (h, w, diff.max(), (diff > 0).mean())


def test_resize_graph_refuses_filters_it_cannot_reproduce() -> None:
    with pytest.raises(ArtifactError, match="bicubic or bilinear"):
        resize_graph(Preprocess(64, (0.5,) * 3, (0.5,) * 3, "lanczos", 0.875))


@pytest.mark.slow
@pytest.mark.usefixtures("fp32_predict")
def test_openvino_ir_gives_the_same_probabilities(trained_run: Path, exports: Path, real_photos: list[Path]) -> None:
    ov = pytest.importorskip("openvino")
    xml = exported(trained_run, exports, "model.xml", "openvino")
    assert xml.with_suffix(".bin").is_file()
    model = imagefit.load(trained_run)
    core = ov.Core()
    read = core.read_model(str(xml))
    assert json.loads(read.get_rt_info(["imagefit", "classes"]).astype(str)) == model.classes
    compiled = core.compile_model(read, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    photos = real_photos[:8]
    x = np.stack([model.preprocess.pixels(decode_array(read_bytes(p), draft_size=model.preprocess.resize_size)) for p in photos])
    got = compiled(x)[0]
    assert np.abs(got - model.predict(photos).probs).max() < 1e-3


def test_bad_requests_are_clear_errors(trained_run: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="allowed: onnx, openvino, web"):
        export_model(trained_run, tmp_path / "m.tflite", "tflite")
    with pytest.raises(ArtifactError, match="not an imagefit run"):
        export_model(tmp_path, tmp_path / "m.onnx")
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "keep.txt").write_text("x")
    with pytest.raises(OutputError, match="not an empty folder"):
        export_model(trained_run, tmp_path / "site", "web")
    assert FORMATS == ("onnx", "openvino", "web")


def test_cli_command_exports(onnx_file: Path, trained_run: Path, tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from imagefit.cli.export import export

    app = typer.Typer()
    app.command()(export)
    out = tmp_path / "cli.onnx"
    result = CliRunner().invoke(app, [str(trained_run), str(out), "--format", "onnx"])
    assert result.exit_code == 0, result.output
    assert "exported:" in result.output and out.stat().st_size == onnx_file.stat().st_size


@pytest.mark.usefixtures("fp32_predict")
def test_recorded_tta_is_in_the_graph(trained_run: Path, sample_data: Path, tmp_path: Path) -> None:
    """A run saved with flip averaging exports a graph that averages the mirror image too."""
    from _runs import edited_run

    run = edited_run(trained_run, tmp_path / "tta", tta=True)
    photos = sorted((sample_data / "val").rglob("*.jpg"))[:8]
    model = imagefit.load(run)
    path = export_model(run, tmp_path / "tta.onnx")
    s = _session(path)
    assert s.get_modelmeta().custom_metadata_map["imagefit.tta"] == "true"
    x = np.stack([model.preprocess.pixels(decode_array(read_bytes(p), draft_size=model.preprocess.resize_size)) for p in photos])
    got = s.run(None, {"pixels": x})[0]
    assert np.abs(got - model.predict(photos).probs).max() < 1e-3
    assert np.abs(got - model.predict(photos, tta=False).probs).max() > 1e-4
