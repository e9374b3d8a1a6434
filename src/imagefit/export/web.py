"""``--format web``: a static folder that classifies photos in the browser, offline.

The folder holds ``index.html``, ``app.js``, ``style.css`` (the served page's
look), ``model.onnx``, and two classic scripts: ``model.js`` (the same graph,
base64, with the class names) and ``ort-runtime.js`` (ONNX Runtime Web's
WebAssembly build). Browsers refuse ``fetch`` and module scripts from
``file://``, but run classic scripts, so the page works when opened straight
from disk, as well as from any static host.

ONNX Runtime Web is vendored from npm at install time (``make install`` ->
``make web-vendor``, into ``imagefit/web/vendor/``), never downloaded at run time.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import onnx

from ..errors import ArtifactError, OutputError

PAGE = Path(__file__).resolve().parent.parent / "web"
VENDOR = PAGE / "vendor"
# What the page needs from the onnxruntime-web npm package's dist/ folder.
RUNTIME_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
# The page's own files, and the served page's style sheet: one look for both pages, written once.
PAGE_FILES = {"index.html": PAGE / "index.html", "app.js": PAGE / "app.js", "style.css": PAGE.parent / "serve" / "static" / "style.css"}


def vendored_runtime(vendor: Path = VENDOR) -> dict[str, Path]:
    """The vendored ONNX Runtime Web files.

    Raises:
        ArtifactError: they are missing (``make web-vendor`` was not run).
    """
    found = {name: vendor / name for name in RUNTIME_FILES}
    missing = [name for name, p in found.items() if not p.is_file()]
    if missing:
        raise ArtifactError(
            f"--format web needs ONNX Runtime Web in {vendor} (missing {', '.join(missing)}); run `make web-vendor` (npm) once"
        )
    return found


def _js_assign(name: str, value: Any) -> str:
    return f"window.{name} = {json.dumps(value, separators=(',', ':'))};\n"


def write_site(graph: onnx.ModelProto, model: Any, out: Path) -> Path:
    """Write the page for ``graph`` (an any-size probability graph) into the folder ``out``.

    The folder is built beside ``out`` and renamed into place, so a failed
    export leaves no half-written page.

    Raises:
        OutputError: ``out`` exists and is not an empty folder.
    """
    runtime = vendored_runtime()
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OutputError(f"{out} already exists and is not an empty folder; choose another output folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    data = graph.SerializeToString()
    metrics = model.meta.get("metrics", {}).get("val", {})
    accuracy = metrics.get("accuracy") if isinstance(metrics.get("accuracy"), (int, float)) else None
    info = {
        "name": model.path.name,
        "backbone": model.meta["backbone"]["name"],
        "classes": list(model.classes),
        "accuracy": accuracy,
        "onnx": base64.b64encode(data).decode("ascii"),
    }
    ort_js = runtime["ort.wasm.min.js"].read_text(encoding="utf-8")
    wasm = {
        "mjs": runtime["ort-wasm-simd-threaded.mjs"].read_text(encoding="utf-8"),
        "wasm": base64.b64encode(runtime["ort-wasm-simd-threaded.wasm"].read_bytes()).decode("ascii"),
    }
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for name, source in PAGE_FILES.items():
            shutil.copyfile(source, tmp / name)
        (tmp / "model.onnx").write_bytes(data)
        (tmp / "model.js").write_text(_js_assign("IMAGEFIT_MODEL", info), encoding="utf-8")
        (tmp / "ort-runtime.js").write_text(ort_js + "\n" + _js_assign("IMAGEFIT_ORT", wasm), encoding="utf-8")
        if out.is_dir():
            out.rmdir()
        os.replace(tmp, out)
    except OSError as exc:
        raise OutputError(f"cannot write the web page to {out}: {exc.strerror or exc}") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out
