"""The README's export example runs as written, with only onnxruntime, NumPy and Pillow importable."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import imagefit

README = Path(__file__).resolve().parents[2] / "README.md"
MARKER = "<!-- export-example: run by tests/export/test_readme.py -->"
# The only packages the example may use (with their bundled shared libraries).
ALLOWED = ("numpy", "numpy.libs", "onnxruntime", "PIL", "pillow.libs")


def readme_example() -> str:
    text = README.read_text(encoding="utf-8")
    assert MARKER in text, "the README lost its export example"
    block = re.search(r"```python\n(.*?)```", text[text.index(MARKER) :], re.S)
    assert block is not None
    return block.group(1)


def isolated_path(tmp_path: Path) -> Path:
    """A folder holding only the allowed packages (links into this environment's site-packages)."""
    import numpy

    site = Path(numpy.__file__).resolve().parents[1]
    folder = tmp_path / "site"
    folder.mkdir()
    for name in ALLOWED:
        if (site / name).exists():
            (folder / name).symlink_to(site / name)
    return folder


@pytest.mark.slow
def test_readme_example_classifies_a_photo_without_imagefit(
    onnx_file: Path, trained_run: Path, sample_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMAGEFIT_PRECISION", "fp32")  # what the exported file computes
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(onnx_file, work / "model.onnx")
    photo = sorted((sample_data / "val" / "dogs").glob("*.jpg"))[0]
    shutil.copy(photo, work / "photo.jpg")
    script = work / "example.py"
    # -I -S: no site-packages, no user site, no PYTHONPATH; the example then proves what it imported.
    script.write_text(
        readme_example() + "\nimport sys as _s\n_bad = sorted(m for m in _s.modules if m.split('.')[0] in ('torch', 'imagefit', 'timm'))\n"
        "print('FORBIDDEN', _bad)\nprint('PROBS', json.dumps([float(p) for p in probs]))\n"
    )
    boot = f"import sys; sys.path.insert(0, {str(isolated_path(tmp_path))!r}); sys.argv = ['example.py']; exec(compile(open('example.py').read(), 'example.py', 'exec'))"
    done = subprocess.run([sys.executable, "-I", "-S", "-c", boot], cwd=work, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert "FORBIDDEN []" in lines
    probs = np.array(json.loads(next(line for line in lines if line.startswith("PROBS "))[6:]))
    label, prob = lines[0].rsplit(" ", 1)
    expected = imagefit.load(trained_run).predict([photo])[0]
    assert label == expected["label"] == "dogs"
    # Pillow's resize vs imagefit's (torch's uint8 kernel with Pillow's filter): nearly all pixels equal.
    assert np.abs(probs - np.array(list(expected["probabilities"].values()))).max() < 1e-3
    assert abs(float(prob) - expected["probability"]) < 1e-3


def test_isolated_interpreter_cannot_import_torch(tmp_path: Path) -> None:
    """The guard the example runs under is real: torch and imagefit are not importable there."""
    boot = f"import sys; sys.path.insert(0, {str(isolated_path(tmp_path))!r}); import onnxruntime, numpy, PIL.Image\nfor m in ('torch', 'imagefit'):\n    try:\n        __import__(m)\n    except ImportError:\n        print('missing', m)"
    done = subprocess.run([sys.executable, "-I", "-S", "-c", boot], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[:2] == ["missing torch", "missing imagefit"]
