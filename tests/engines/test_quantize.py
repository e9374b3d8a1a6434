"""int8 engine: a graph quantized on calibration photos, cached by their digest, close to fp32, never mixed.

A tiny seeded CNN (convolution, depthwise convolution, ReLU6, a residual add, pooling: the op types
lite0 is made of) on small synthetic photos keeps each quantization to a second or two. OpenVINO runs
in a child process, as everywhere in the suite (tests/conftest.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from imagefit.data.load import SkipLog
from imagefit.data.transforms import Preprocess
from imagefit.engine import Engine, load_precision
from imagefit.engines.quantize import calibration_choice, calibration_pixels, quantized_path
from imagefit.errors import ConfigError, ImagefitError
from imagefit.features import FeatureCache, extract

pytest.importorskip("onnxruntime")

SIZE = 32
PRE = Preprocess(SIZE, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU6())
        self.dw = nn.Sequential(nn.Conv2d(16, 16, 3, 1, 1, groups=16), nn.ReLU6(), nn.Conv2d(16, 16, 1))
        self.head = nn.Sequential(nn.Conv2d(16, 32, 1), nn.ReLU6(), nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return self.head(x + self.dw(x))


def photos(n: int, seed: int) -> np.ndarray:
    """uint8 [n, S, S, 3]: smooth colour gradients plus noise, so that features differ from photo to photo."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, SIZE, dtype=np.float32)
    base = rng.uniform(0, 255, (n, 1, 1, 3)) * ramp[None, :, None, None] + rng.uniform(0, 255, (n, 1, 1, 3)) * ramp[None, None, :, None]
    return np.clip(base / 2 + rng.normal(0, 20, (n, SIZE, SIZE, 3)), 0, 255).astype(np.uint8)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("IMAGEFIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("IMAGEFIT_PRECISION", raising=False)
    return tmp_path / "cache"


def fp32_graph(cache: Path) -> Path:
    return cache / "onnx" / f"tiny-{PRE.key()}.onnx"


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_int8_graph_is_quantized_cached_by_calibration_and_close_to_fp32(cache: Path) -> None:
    import onnx

    x = photos(12, seed=1)
    ref = Engine(Tiny(), PRE, "tiny", "onnx", precision="fp32")(x)
    cal_a, cal_b = list(photos(24, seed=2)), list(photos(24, seed=3))
    a = Engine(Tiny(), PRE, "tiny", "onnx", precision="int8", calibration=cal_a)
    assert a.kind == "onnx" and a.precision.startswith("int8-") and len(a.precision) == len("int8-") + 16
    path_a = quantized_path(fp32_graph(cache), a.precision.removeprefix("int8-"))
    graph = onnx.load(str(path_a))
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in graph.graph.node}
    assert any(i.data_type == onnx.TensorProto.INT8 for i in graph.graph.initializer)  # int8 weights
    out_a = a(x)
    # Close to fp32 (a graph that quantized ReLU6 outputs on the convolution's own range was ~0.5
    # off on lite0), yet not identical: the int8 graph is what ran.
    assert 0 < relative_error(out_a, ref) < 0.1
    assert np.corrcoef(out_a.ravel(), ref.ravel())[0, 1] > 0.99

    # The same calibration again (as photo arrays in another list): the cached graph, not made again.
    mtime = path_a.stat().st_mtime_ns
    again = Engine(Tiny(), PRE, "tiny", "onnx", precision="int8", calibration=[c.copy() for c in cal_a])
    assert again.precision == a.precision and path_a.stat().st_mtime_ns == mtime
    # The recorded precision alone finds it (a model's prediction path), with no backbone at all.
    recorded = Engine(lambda: pytest.fail("the cached graph needs no backbone"), PRE, "tiny", "onnx", precision=a.precision)
    np.testing.assert_array_equal(recorded(x), out_a)

    # Other calibration photos: another precision, another file; both kept.
    b = Engine(Tiny(), PRE, "tiny", "onnx", precision="int8", calibration=cal_b)
    assert b.precision != a.precision
    path_b = quantized_path(fp32_graph(cache), b.precision.removeprefix("int8-"))
    assert path_b != path_a and path_a.is_file() and path_b.is_file()
    assert relative_error(b(x), ref) < 0.1


def test_int8_calibration_from_photo_files_skips_unreadable_ones(cache: Path, tmp_path: Path) -> None:
    files = []
    for i, arr in enumerate(photos(6, seed=4)):
        files.append(tmp_path / f"p{i}.png")
        Image.fromarray(arr).save(files[-1])
    (tmp_path / "bad.jpg").write_bytes(b"not a photo")
    pixels = calibration_pixels([*files, tmp_path / "bad.jpg"], PRE)
    assert pixels.shape == (6, SIZE, SIZE, 3) and pixels.dtype == np.uint8
    eng = Engine(Tiny(), PRE, "tiny", "onnx", precision="int8", calibration=files)
    assert eng.precision.startswith("int8-") and eng(photos(2, seed=5)).shape == (2, 32)
    with pytest.raises(ImagefitError, match="at least one readable photo"):
        calibration_pixels([tmp_path / "bad.jpg"], PRE)


def test_calibration_choice_is_seeded_and_keeps_order() -> None:
    paths = [Path(f"{i}.jpg") for i in range(500)]
    picked = calibration_choice(paths, 200, seed=0)
    assert len(picked) == 200 == len(set(picked)) and picked == sorted(picked, key=lambda p: int(p.stem))
    assert picked == calibration_choice(paths, 200, seed=0) != calibration_choice(paths, 200, seed=1)
    assert calibration_choice(paths[:10], 200) == paths[:10]


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_int8_without_calibration_is_refused_in_one_line(cache: Path, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    if how == "environment":
        monkeypatch.setenv("IMAGEFIT_PRECISION", "int8")
    with pytest.raises(ConfigError) as err:
        Engine(Tiny(), PRE, "tiny", "onnx", precision="int8" if how == "argument" else "auto")
    assert "\n" not in str(err.value)
    assert "invalid calibration for precision int8: received None; allowed: training photos" in str(err.value)


def test_int8_is_refused_where_it_cannot_run(cache: Path) -> None:
    with pytest.raises(ConfigError, match="precision for engine torch: received 'int8'"):
        Engine(Tiny(), PRE, "tiny", "torch", precision="int8", calibration=list(photos(2, 0)))
    # A precision naming a graph that is not in this cache: one line saying what to do.
    with pytest.raises(ImagefitError, match="not in the cache.*calibration photos again"):
        Engine(Tiny(), PRE, "tiny", "onnx", precision="int8-0123456789abcdef")
    with pytest.raises(ConfigError, match="invalid int8 calibration"):
        Engine(Tiny(), PRE, "tiny", "onnx", precision="int8", calibration="int8-xyz")


def test_feature_cache_folder_differs_by_calibration(cache: Path, tmp_path: Path) -> None:
    files = []
    for i, arr in enumerate(photos(3, seed=6)):
        files.append(tmp_path / "photos" / f"p{i}.png")
        files[-1].parent.mkdir(exist_ok=True)
        Image.fromarray(arr).save(files[-1])
    store = FeatureCache.for_backbone("tinydigest", PRE)
    dirs = []
    for seed in (2, 3):
        eng = Engine(Tiny(), PRE, "tiny", "onnx", precision="int8", calibration=list(photos(16, seed)))
        got = extract(files, eng, PRE, SkipLog(), cache=store)
        assert got.extracted == 3  # another calibration's features were not reused
        dirs.append(store.with_precision(eng.precision).dir)
        assert dirs[-1].name == eng.precision and any(dirs[-1].rglob("*.npy"))
    assert dirs[0] != dirs[1] and dirs[0] != store.with_precision("fp32").dir


def test_load_precision_keeps_a_recorded_int8_precision(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IMAGEFIT_PRECISION", raising=False)
    monkeypatch.delenv("IMAGEFIT_ENGINE", raising=False)
    assert load_precision("int8-0123456789abcdef", "auto", "cpu") == ("int8-0123456789abcdef", None)
    assert load_precision("int8-0123456789abcdef", "onnx", "cpu") == ("int8-0123456789abcdef", None)
    precision, note = load_precision("int8-0123456789abcdef", "torch", "cpu")
    assert precision == "fp32" and note is not None and "int8" in note and "\n" not in note
    # int8 asked for every command: a run keeps its own calibration's graph.
    monkeypatch.setenv("IMAGEFIT_PRECISION", "int8")
    assert load_precision("int8-0123456789abcdef", "auto", "cpu") == ("int8-0123456789abcdef", None)


_OPENVINO_INT8 = """
import json, sys
import numpy as np
import torch
sys.path.insert(0, sys.argv[1])
from test_quantize import PRE, Tiny
from imagefit.engine import Engine
x, cal, ref = (np.load(p) for p in sys.argv[2:5])
eng = Engine(Tiny(), PRE, "tiny", "openvino", precision="int8", calibration=list(cal))
out = eng(x)
print(json.dumps({"kind": eng.kind, "precision": eng.precision,
                  "error": float(np.linalg.norm(out - ref) / np.linalg.norm(ref)), "shape": list(out.shape)}))
"""


def test_openvino_runs_the_int8_graph_in_a_child_process(cache: Path, tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    x, cal = photos(12, seed=1), photos(24, seed=2)
    ref = Engine(Tiny(), PRE, "tiny", "onnx", precision="fp32")(x)
    ort_int8 = Engine(Tiny(), PRE, "tiny", "onnx", precision="int8", calibration=list(cal))
    for name, arr in {"x": x, "cal": cal, "ref": ref}.items():
        np.save(tmp_path / f"{name}.npy", arr)
    env = {**os.environ, "IMAGEFIT_THREADS": "2"}
    args = [str(Path(__file__).parent), *(str(tmp_path / f"{n}.npy") for n in ("x", "cal", "ref"))]
    out = subprocess.run([sys.executable, "-c", _OPENVINO_INT8, *args], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    # The same cached graph (same calibration, same precision), run by OpenVINO's int8 kernels.
    assert got["kind"] == "openvino" and got["precision"] == ort_int8.precision and got["shape"] == [12, 32]
    assert 0 < got["error"] < 0.1
