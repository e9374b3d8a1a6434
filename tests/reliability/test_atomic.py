"""Issue 5, part 3: every file imagefit writes is written atomically; the feature cache follows content.

* A static audit of ``src/imagefit``: no direct writes to final paths
  (``open(..., "w")``, ``write_text``, ``np.save(path)``, ``save_file``,
  ``torch.save``, ``json.dump``, ``savefig(path)``, pickles); everything goes
  through :mod:`imagefit.paths`' ``atomic_write_*``.
* A write that fails half-way (an exception, Ctrl-C) leaves the old file and no
  temporary file.
* The feature cache is keyed by content: editing a photo's pixels changes its
  features; renaming it keeps the cache hit.
"""

from __future__ import annotations

import ast
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import imagefit
from imagefit import paths as paths_mod
from imagefit.data.load import SkipLog
from imagefit.errors import OutputError
from imagefit.features import FeatureCache, extract
from imagefit.predict import Predictions

from .conftest import COLORS, noisy, train_tiny

SRC = Path(imagefit.__file__).resolve().parent

# (file relative to src/imagefit, function) allowed to write directly, and why.
ALLOWED = {
    ("paths.py", "atomic_write_bytes"),  # the atomic writer itself (temp file + fsync + rename)
    # Files written inside a private temporary folder that is then renamed into place whole.
    ("export/bundle.py", "_write_openvino"),
    ("export/web.py", "write_site"),
}
BUFFER_FACTORIES = {"BytesIO", "StringIO"}


class _Audit(ast.NodeVisitor):
    def __init__(self, rel: str):
        self.rel = rel
        self.func: list[str] = []
        self.buffers: list[set[str]] = [set()]
        self.problems: list[str] = []

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self.func.append(node.name)
        self.buffers.append(set())
        # Names bound to in-memory buffers in this function (io.BytesIO(), StringIO()).
        for sub in ast.walk(node):
            if isinstance(sub, ast.Assign) and isinstance(sub.value, ast.Call) and _name(sub.value.func) in BUFFER_FACTORIES:
                self.buffers[-1].update(t.id for t in sub.targets if isinstance(t, ast.Name))
        self.generic_visit(node)
        self.func.pop()
        self.buffers.pop()

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def _is_buffer(self, node: ast.expr | None) -> bool:
        if isinstance(node, ast.Name):
            return node.id in self.buffers[-1]
        return isinstance(node, ast.Call) and _name(node.func) in BUFFER_FACTORIES

    def _flag(self, node: ast.Call, what: str) -> None:
        where = (self.rel, self.func[-1] if self.func else "<module>")
        if where not in ALLOWED:
            self.problems.append(f"{self.rel}:{node.lineno} in {where[1]}(): {what}")

    def visit_Call(self, node: ast.Call) -> None:
        name = _name(node.func)
        full = _dotted(node.func)
        first = node.args[0] if node.args else None
        if name in ("write_text", "write_bytes"):
            self._flag(node, f".{name}() to a final path")
        elif name in ("open", "fdopen"):
            mode = _mode(node, 1 if full in ("open", "os.fdopen") else 0)
            if mode and any(c in mode for c in "wax+"):
                self._flag(node, f"{full}(..., {mode!r})")
        elif (
            full in ("np.save", "numpy.save", "np.savez", "np.savez_compressed", "np.savetxt", "torch.save", "json.dump")
            or name == "savefig"
        ):
            if not self._is_buffer(first):
                self._flag(node, f"{full or name}() to a path")
        elif name in ("save_file",) or full.startswith("pickle.") or full in ("joblib.dump",):
            self._flag(node, f"{full or name}()")
        elif full == "torch.onnx.export" and self.rel != "export/graph.py":
            self._flag(node, "torch.onnx.export() outside export/graph.py's temp-file-and-rename")
        self.generic_visit(node)


def _name(func: ast.expr) -> str:
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return ""


def _dotted(func: ast.expr) -> str:
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if isinstance(func, ast.Name):
        parts.append(func.id)
    return ".".join(reversed(parts))


def _mode(node: ast.Call, pos: int) -> str:
    for kw in node.keywords:
        if kw.arg == "mode" and isinstance(kw.value, ast.Constant):
            return str(kw.value.value)
    if len(node.args) > pos and isinstance(node.args[pos], ast.Constant):
        return str(node.args[pos].value)
    return ""


def test_no_direct_writes_in_src() -> None:
    problems: list[str] = []
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 20
    for f in files:
        rel = f.relative_to(SRC).as_posix()
        audit = _Audit(rel)
        audit.visit(ast.parse(f.read_text(encoding="utf-8"), filename=str(f)))
        problems.extend(audit.problems)
    assert not problems, "direct (non-atomic) writes; use imagefit.paths.atomic_write_*:\n" + "\n".join(problems)


def test_audit_catches_direct_writes() -> None:
    code = (
        "import json, numpy as np, io\n"
        "def bad(p, obj, arr, fig):\n"
        "    p.write_text('x')\n"
        "    open(p, 'w').write('x')\n"
        "    np.save(p, arr)\n"
        "    json.dump(obj, open(p, 'wb'))\n"
        "    fig.savefig(p)\n"
        "def good(p, arr, fig):\n"
        "    buf = io.BytesIO()\n"
        "    np.save(buf, arr)\n"
        "    fig.savefig(buf)\n"
        "    open(p).read()\n"
    )
    audit = _Audit("x.py")
    audit.visit(ast.parse(code))
    assert len(audit.problems) == 6, audit.problems
    assert all("in bad()" in p for p in audit.problems)


# -- behaviour of the atomic writer -------------------------------------------------------
@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_failed_write_keeps_the_old_file(failure: BaseException, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "model.safetensors"
    paths_mod.atomic_write_bytes(target, b"old")

    def boom(*a: object, **k: object) -> None:
        raise failure

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(type(failure)) as exc:
        paths_mod.atomic_write_bytes(target, b"new" * 1000)
    if isinstance(failure, OSError):
        # An OSError becomes a clear OutputError (still an OSError) naming the file.
        assert isinstance(exc.value, OutputError)
        assert str(exc.value) == f"cannot write {target}: No space left on device"
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


def test_prediction_csv_and_cache_writes_are_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    preds = Predictions([{"path": "a.jpg", "label": "x", "probability": 1.0, "probabilities": {"x": 1.0, "y": 0.0}}], ["x", "y"])
    csv_path = preds.to_csv(tmp_path / "p.csv")
    before = csv_path.read_bytes()
    cache = FeatureCache("ns", root=tmp_path / "cache")
    cache.put("ab" * 16, "orig", np.ones(4, np.float32))

    def no_rename(*a: object, **k: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", no_rename)
    with pytest.raises(OSError):
        Predictions([], ["x", "y"]).to_csv(csv_path)
    with pytest.raises(OSError):
        cache.put("ab" * 16, "orig", np.zeros(4, np.float32))
    monkeypatch.undo()
    assert csv_path.read_bytes() == before
    np.testing.assert_array_equal(cache.get("ab" * 16, "orig"), np.ones(4, np.float32))
    leftovers = [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert not leftovers


# -- the feature cache follows content, not names -------------------------------------------
@pytest.fixture(scope="module")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> imagefit.Model:
    return imagefit.load(train_tiny(tmp_path_factory.mktemp("cachedata"), 5))


def test_feature_cache_hit_on_rename_miss_on_edit(small_model: imagefit.Model, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    files = []
    for i in range(4):
        p = photos / f"p{i}.png"
        Image.fromarray(noisy(COLORS["red"], (48, 40), seed=100 + i)).save(p)
        files.append(p)
    model = small_model
    own = model._cache()
    assert own is not None
    # The model's cache namespace in a private root, at the precision extract() uses for this engine.
    cache = FeatureCache(own.namespace, root=tmp_path / "cache").with_precision(model.engine.precision)

    def run(paths: list[Path]):  # type: ignore[no-untyped-def]
        return extract(paths, model.engine, model.preprocess, SkipLog(), cache=cache)

    first = run(files)
    assert first.extracted == 4
    again = run(files)
    assert again.extracted == 0
    np.testing.assert_array_equal(again.values, first.values)

    # Renamed (and moved): same bytes, so the cache still hits and the features are the same.
    moved = tmp_path / "elsewhere" / "renamed.png"
    moved.parent.mkdir()
    shutil.move(files[0], moved)
    files[0] = moved
    renamed = run(files)
    assert renamed.extracted == 0
    np.testing.assert_array_equal(renamed.values, first.values)

    # Same name, edited pixels: the cache misses for that photo only and its features change.
    Image.fromarray(noisy(COLORS["green"], (48, 40), seed=7)).save(files[1])
    edited = run(files)
    assert edited.extracted == 1
    assert not np.allclose(edited.values[1], first.values[1])
    np.testing.assert_array_equal(edited.values[[0, 2, 3]], first.values[[0, 2, 3]])

    # A damaged cache entry is recomputed, not trusted.
    entry = next(cache.dir.rglob("*.npy"))
    entry.write_bytes(entry.read_bytes()[:20])
    repaired = run(files)
    assert repaired.extracted == 1
    np.testing.assert_array_equal(repaired.values, edited.values)


def test_atomic_write_makes_missing_folders_and_respects_umask(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        target = paths_mod.atomic_write_bytes(tmp_path / "a" / "b" / "f.bin", b"x" * 100_000, durable=False)
    finally:
        os.umask(old)
    assert target.read_bytes() == b"x" * 100_000
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~0o027)
    assert [p.name for p in target.parent.iterdir()] == ["f.bin"]


def test_atomic_write_draws_a_new_temp_name_on_collision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    names = iter(["same", "same", "other"])
    monkeypatch.setattr(paths_mod.secrets, "token_hex", lambda n: next(names))
    paths_mod.atomic_write_bytes(tmp_path / "one", b"1")
    (tmp_path / ".two.same.tmp").write_bytes(b"someone else's")  # taken: must not be clobbered
    paths_mod.atomic_write_bytes(tmp_path / "two", b"2")
    assert (tmp_path / "two").read_bytes() == b"2"
    assert (tmp_path / ".two.same.tmp").read_bytes() == b"someone else's"
