"""imagefit.inspect: counts, the sample photos of the report, and the augmentation preview."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from PIL import Image

from imagefit.inspect import augment_preview, data_duplicates, inspect_data, sample_photos, write_contact_sheet, write_inspect_report

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


def _copies(sample_data: Path, root: Path) -> dict[str, Path]:
    """A train/val/test folder: 6 real training photos, altered copies of 4 of them in val, a byte copy in test."""
    import shutil

    from PIL import ImageOps

    originals = sorted((sample_data / "train" / "cats").glob("*.jpg"))[:6]
    for p in originals:
        (root / "train" / "cats").mkdir(parents=True, exist_ok=True)
        shutil.copy(p, root / "train" / "cats" / p.name)
    (root / "val" / "cats").mkdir(parents=True)
    (root / "test" / "cats").mkdir(parents=True)
    made = {}
    with Image.open(originals[0]) as a, Image.open(originals[1]) as b, Image.open(originals[2]) as c, Image.open(originals[3]) as d:
        a.resize((a.width * 3 // 4, a.height * 3 // 4)).save(made.setdefault("resized", root / "val" / "cats" / "resized.jpg"))
        b.save(made.setdefault("q40", root / "val" / "cats" / "q40.jpg"), quality=40)
        dx, dy = round(c.width * 0.06), round(c.height * 0.06)
        c.crop((dx, dy, c.width - dx, c.height - dy)).save(made.setdefault("cropped", root / "val" / "cats" / "cropped.png"))
        ImageOps.mirror(d).save(made.setdefault("mirrored", root / "val" / "cats" / "mirrored.jpg"), quality=90)
    shutil.copy(originals[4], made.setdefault("exact", root / "test" / "cats" / "exact.jpg"))
    # Distinct photos, never paired; a second class so that each split is a classification set.
    for p in sorted((sample_data / "val" / "cats").glob("*.jpg"))[:2]:
        shutil.copy(p, root / "val" / "cats" / p.name)
    dogs = sorted((sample_data / "train" / "dogs").glob("*.jpg"))[:2] + sorted((sample_data / "val" / "dogs").glob("*.jpg"))[:2]
    for split, p in zip(("train", "train", "val", "test"), dogs):
        (root / split / "dogs").mkdir(parents=True, exist_ok=True)
        shutil.copy(p, root / split / "dogs" / p.name)
    return made


def test_duplicates_exact_without_a_model(sample_data: Path, tmp_path: Path) -> None:
    _copies(sample_data, tmp_path / "d")
    rep = data_duplicates(tmp_path / "d", near=False)
    assert [(p.split_a, p.split_b, p.exact) for p in rep.pairs] == [("train", "test", True)]
    assert rep.counts() == {"train~test": {"exact": 1, "near": 0}}
    assert rep.leaked("test") == [tmp_path / "d" / "test" / "cats" / "exact.jpg"]


def test_duplicates_finds_altered_copies_across_splits(sample_data: Path, tmp_path: Path) -> None:
    made = _copies(sample_data, tmp_path / "d")
    rep = data_duplicates(tmp_path / "d", near=True, model="lite0")
    near = {p.b.stem: p.a.name for p in rep.pairs if not p.exact}
    assert set(near) == {"resized", "q40", "cropped", "mirrored"}, rep.to_dict()
    assert rep.counts() == {"train~test": {"exact": 1, "near": 0}, "train~val": {"exact": 0, "near": 4}}
    assert sorted(rep.leaked("val")) == sorted(made[k] for k in ("resized", "q40", "cropped", "mirrored"))
    sheet = write_contact_sheet(rep, tmp_path / "sheet.png")
    with Image.open(sheet) as img:
        assert img.height > img.width  # 5 pairs, one a row, two photos wide
