"""Copies of a trained run with edited records (what a run saved with other settings looks like)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any


def edited_run(run: Path, dest: Path, **changes: Any) -> Path:
    """Copy run folder ``run`` to ``dest`` with top-level keys of ``imagefit.json`` replaced by ``changes``."""
    shutil.copytree(run, dest)
    meta = json.loads((dest / "imagefit.json").read_text())
    meta.update(changes)
    (dest / "imagefit.json").write_text(json.dumps(meta))
    return dest
