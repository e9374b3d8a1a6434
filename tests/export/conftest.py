"""The session's trained run, exported once per format, and the photos its answers are compared on."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagefit.export import export_model


@pytest.fixture(scope="session")
def exports(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder to export into (each test's export is cached here by name)."""
    return tmp_path_factory.mktemp("exports")


def exported(run: Path, folder: Path, name: str, fmt: str = "onnx", any_size: bool = False) -> Path:
    path = folder / name
    if not path.exists():
        export_model(run, path, fmt, any_size=any_size)
    return path


@pytest.fixture(scope="session")
def onnx_file(trained_run: Path, exports: Path) -> Path:
    return exported(trained_run, exports, "model.onnx")


@pytest.fixture(scope="session")
def any_size_file(trained_run: Path, exports: Path) -> Path:
    return exported(trained_run, exports, "any.onnx", any_size=True)


@pytest.fixture(scope="session")
def real_photos(real_data: Path) -> list[Path]:
    """20 validation photos of each class (different sizes and aspect ratios)."""
    return sorted((real_data / "validation" / "cats").glob("*.jpg"))[:20] + sorted((real_data / "validation" / "dogs").glob("*.jpg"))[:20]
