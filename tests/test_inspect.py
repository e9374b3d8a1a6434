"""imagefit.inspect: counts, the sample photos of the report, and the augmentation preview."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from PIL import Image

from imagefit.inspect import augment_preview, inspect_data, sample_photos, write_inspect_report

ROOT = Path(__file__).resolve().parents[1]


def test_sample_photos_are_the_same_every_time(image_folder) -> None:  # type: ignore[no-untyped-def]
    data = image_folder(n_per_class=8)
    a = sample_photos(data, per_class=3)
    assert list(a) == ["green", "red"] and all(len(v) == 3 for v in a.values())
    assert all(p.parent.name == c for c, ps in a.items() for p in ps)
    assert sample_photos(data, per_class=3) == a
    assert sample_photos(data, per_class=3, seed=1) != a


def test_write_inspect_report(image_folder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = image_folder(n_per_class=2)
    rep = inspect_data(data)
    path = write_inspect_report(data, rep, tmp_path / "inspect.html")
    assert path.is_file() and "green" in path.read_text()


def test_augment_preview(image_folder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = image_folder(n_per_class=3)
    (data / "red" / "broken.png").write_bytes(b"garbage")
    out = augment_preview(data, tmp_path / "aug.png", "heavy", model="simple_cnn", photos=2, variants=3)
    with Image.open(out) as img:
        rows, cols = img.height, img.width
    assert cols > rows > 0 and round(cols / rows) == 2  # 2 photos x (1 original + 3 augmented)


def test_inspect_imports_no_torch(sample_data: Path) -> None:
    """A look at a folder starts fast: inspect (library) never imports torch."""
    code = (
        "import sys, types; pkg = types.ModuleType('imagefit'); pkg.__path__ = [sys.argv[1]]; sys.modules['imagefit'] = pkg\n"
        "from imagefit.inspect import inspect_data\n"
        "rep = inspect_data(sys.argv[2]); assert rep['splits']['val']['n_readable'] == 24\n"
        "print(sorted(m for m in ('torch', 'timm', 'matplotlib', 'sklearn', 'onnxruntime') if m in sys.modules))"
    )
    # The package __init__ is bypassed: it loads the whole API (see the note in tests/test_cli.py).
    p = subprocess.run(
        [sys.executable, "-c", code, str(ROOT / "src" / "imagefit"), str(sample_data)], capture_output=True, text=True, timeout=120
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"
