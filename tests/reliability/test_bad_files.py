"""Issue 5, part 1: bad files never crash a command; each is listed with its reason.

One salted dataset (see ``conftest.build_bad_dataset``) goes through ``inspect``,
``train`` (linear and full), ``evaluate`` and ``predict``, through the Python
API and the CLI. Every command must finish, list every bad file with its
reason, and give results for every good and odd-but-valid file.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import imagefit
from imagefit.cli import main
from imagefit.config import RunConfig
from imagefit.data import load as load_mod
from imagefit.data.discover import is_image_name
from imagefit.data.load import decode, load_image, read_bytes
from imagefit.data.prepare import prepare_data
from imagefit.errors import BadImageError
from imagefit.inspect import inspect_data

from .conftest import IS_ROOT, NON_UTF8_NAME, BadDataset


def as_map(items) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """SkipLog items, ``as_list()`` dicts or CSV rows -> {path: reason}."""
    out = {}
    for it in items:
        p, r = (it["path"], it["reason"]) if isinstance(it, dict) else it
        out[str(p)] = r
    return out


def check_listed(got: dict[str, str], expected: dict[Path, str]) -> None:
    """Exactly the expected files are listed, each with a reason containing the expected words."""
    assert set(got) == {str(p) for p in expected}, f"listed {sorted(got)}, expected {sorted(map(str, expected))}"
    for p, fragment in expected.items():
        assert fragment in got[str(p)].lower(), f"{p}: reason {got[str(p)]!r} lacks {fragment!r}"


def run_cli(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def shown(p: Path) -> str:
    """How the CLI prints a file name: non-UTF-8 bytes as \\xff escapes."""
    return os.fsencode(p.parent.name + "/" + p.name).decode("utf-8", "backslashreplace")


def in_folders(ds: BadDataset) -> dict[Path, str]:
    """The bad files a folder listing offers to predict (image extensions only)."""
    return {p: r for p, r in ds.bad.items() if is_image_name(p)}


# -- the files themselves ---------------------------------------------------------
def test_suite_is_complete(bad_dataset: BadDataset) -> None:
    ds = bad_dataset
    names = {p.name for p in ds.all_files}
    for must in (
        "zero.jpg",
        "truncated.jpg",
        "random.jpg",
        "notes.txt",
        "bomb.png",
        "broken_link.jpg",
        "alpha.png",
        "palette.gif",
        "cmyk.jpg",
        "gray16.png",
        "rgb16.png",
        "gray.jpg",
        "exif_rotated.jpg",
        "tiny_1x1.png",
        "wide_10000x50.png",
        NON_UTF8_NAME,
    ):
        assert must in names
    assert len(ds.bad) >= 7 and len(ds.odd) >= 12


def test_each_file_decodes_or_gives_a_reason(bad_dataset: BadDataset) -> None:
    for p in bad_dataset.usable:
        img = load_image(p)
        assert img.mode == "RGB" and img.size[0] >= 1 and img.size[1] >= 1
    for p, fragment in bad_dataset.bad.items():
        with pytest.raises(BadImageError) as exc:
            load_image(p)
        assert fragment in str(exc.value).lower()


def test_odd_images_convert_faithfully(bad_dataset: BadDataset) -> None:
    by_name = {p.name: p for p in bad_dataset.odd}
    red = np.array([220, 40, 40], float)
    # CMYK, palette and alpha (composited on white) keep the dominant colour.
    for name in ("cmyk.jpg", "palette.gif"):
        mean = np.asarray(load_image(by_name[name]), float).reshape(-1, 3).mean(0)
        assert np.abs(mean - red).max() < 40, (name, mean)
    alpha = np.asarray(load_image(by_name["alpha.png"]), float).reshape(-1, 3).mean(0)
    assert np.abs(alpha - (red + 255) / 2).max() < 40, alpha
    # 16 bit: the full 0..65535 range maps onto 0..255.
    g16 = np.asarray(load_image(by_name["gray16.png"]))
    assert g16.min() <= 1 and g16.max() >= 254
    rgb16 = np.asarray(load_image(by_name["rgb16.png"]), float).reshape(-1, 3).mean(0)
    assert np.abs(rgb16 - red).max() < 2
    # EXIF orientation 6: the 60x30 photo is shown (and used) as 30x60.
    assert load_image(by_name["exif_rotated.jpg"]).size == (30, 60)
    assert load_image(by_name["wide_10000x50.png"]).size == (10000, 50)
    assert load_image(by_name["tiny_1x1.png"]).size == (1, 1)


def test_max_pixels_is_read_at_call_time(monkeypatch: pytest.MonkeyPatch, bad_dataset: BadDataset) -> None:
    wide = next(p for p in bad_dataset.odd if p.name == "wide_10000x50.png")
    assert load_image(wide).size == (10000, 50)
    monkeypatch.setattr(load_mod, "MAX_PIXELS", 100_000)
    with pytest.raises(BadImageError, match="decompression bomb"):
        load_image(wide)
    # An explicit argument still wins.
    assert decode(read_bytes(wide), max_pixels=10**9).size == (10000, 50)


def test_permission_denied(tmp_path: Path) -> None:
    if IS_ROOT:
        pytest.skip("running as root: chmod 000 does not stop root from reading, so there is nothing to test")
    p = tmp_path / "locked.jpg"
    Image.new("RGB", (8, 8)).save(p)
    p.chmod(0)
    try:
        with pytest.raises(BadImageError, match="permission denied"):
            load_image(p)
    finally:
        p.chmod(0o644)


# -- inspect ----------------------------------------------------------------------
def test_inspect_api(bad_dataset: BadDataset) -> None:
    rep = inspect_data(bad_dataset.root)
    s = rep["splits"]["train"]
    assert s["n_files"] == len(bad_dataset.all_files)
    assert s["n_readable"] == len(bad_dataset.usable)
    check_listed(as_map(s["unreadable"]), bad_dataset.bad)
    assert s["size"]["min"] == [1, 1] and s["size"]["max"][0] == 10000


def test_inspect_cli(bad_dataset: BadDataset, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "inspect", bad_dataset.root, "--json")
    assert code == 0
    rep = json.loads(out)
    check_listed(as_map(rep["splits"]["train"]["unreadable"]), bad_dataset.bad)
    code, out, err = run_cli(capsys, "inspect", bad_dataset.root)
    assert code == 0
    text = out + err
    assert f"skipped {len(bad_dataset.bad)} unreadable" in text
    for p in bad_dataset.bad:
        assert shown(p) in text


# -- train ------------------------------------------------------------------------
def _train(ds: BadDataset, out: Path, strategy: str) -> imagefit.Run:
    return imagefit.train(ds.root, out=out, model="simple_cnn", strategy=strategy, epochs=1, batch_size=8, seed=0, workers=2)


@pytest.fixture(scope="module")
def linear_run(bad_dataset: BadDataset, tmp_path_factory: pytest.TempPathFactory) -> imagefit.Run:
    return _train(bad_dataset, tmp_path_factory.mktemp("runs") / "linear", "linear")


@pytest.fixture(scope="module")
def full_run(bad_dataset: BadDataset, tmp_path_factory: pytest.TempPathFactory) -> imagefit.Run:
    return _train(bad_dataset, tmp_path_factory.mktemp("runs") / "full", "full")


@pytest.mark.parametrize("strategy", ["linear", "full"])
def test_train_lists_every_bad_file_and_uses_the_rest(strategy: str, bad_dataset: BadDataset, request: pytest.FixtureRequest) -> None:
    run: imagefit.Run = request.getfixturevalue(f"{strategy}_run")
    check_listed(as_map(run.skipped.items), bad_dataset.bad)
    meta = json.loads((run.path / "imagefit.json").read_text())
    check_listed(as_map(meta["skipped"]), bad_dataset.bad)
    assert meta["data"]["n_train"] + meta["data"]["n_val"] == len(bad_dataset.all_files)
    # Every readable validation file (odd ones included) is scored.
    _, val_set = prepare_data(bad_dataset.root, None, RunConfig.from_options(model="simple_cnn", strategy=strategy, seed=0))
    readable_val = [p for p in val_set.paths if p not in bad_dataset.bad]
    assert run.metrics["n_images"] == len(readable_val)
    assert np.isfinite(run.metrics["log_loss"])
    assert (run.path / "model.safetensors").is_file()


def test_train_cli_prints_the_skipped_list(bad_dataset: BadDataset, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(
        capsys,
        "train",
        bad_dataset.root,
        "--model",
        "simple_cnn",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--out",
        tmp_path / "run",
        "--workers",
        "2",
    )
    assert code == 0, err
    text = out + err
    assert f"skipped {len(bad_dataset.bad)} unreadable" in text
    for p in bad_dataset.bad:
        assert shown(p) in text


# -- evaluate ---------------------------------------------------------------------
@pytest.mark.parametrize("strategy", ["linear", "full"])
def test_evaluate_api(strategy: str, bad_dataset: BadDataset, request: pytest.FixtureRequest) -> None:
    run: imagefit.Run = request.getfixturevalue(f"{strategy}_run")
    metrics = imagefit.load(run.path).evaluate(bad_dataset.root)
    assert metrics["n_images"] == len(bad_dataset.usable)
    assert metrics["n_skipped"] == len(bad_dataset.bad)
    check_listed(as_map(metrics["skipped"]), bad_dataset.bad)


def test_evaluate_cli(linear_run: imagefit.Run, bad_dataset: BadDataset, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_json = tmp_path / "eval.json"
    code, out, err = run_cli(capsys, "evaluate", linear_run.path, bad_dataset.root, "--out", out_json)
    assert code == 0, err
    text = out + err
    assert f"skipped {len(bad_dataset.bad)} unreadable" in text
    for p in bad_dataset.bad:
        assert shown(p) in text
    saved = json.loads(out_json.read_text())
    check_listed(as_map(saved["skipped"]), bad_dataset.bad)
    assert saved["n_images"] == len(bad_dataset.usable)


# -- predict ----------------------------------------------------------------------
def read_csv(path: Path) -> list[dict[str, str]]:
    # File names that are not UTF-8 are written as their own bytes.
    text = path.read_bytes().decode("utf-8", errors="surrogateescape")
    return list(csv.DictReader(io.StringIO(text)))


def check_csv(path: Path, usable: list[Path], bad: dict[Path, str], classes: list[str]) -> None:
    rows = read_csv(path)
    good_rows = {r["path"]: r for r in rows if not r["error"]}
    bad_rows = {r["path"]: r["error"] for r in rows if r["error"]}
    assert set(good_rows) == {str(p) for p in usable}
    for r in good_rows.values():
        assert r["label"] in classes
        assert abs(sum(float(r[f"prob_{c}"]) for c in classes) - 1) < 1e-4
    check_listed(bad_rows, bad)
    assert len(rows) == len(usable) + len(bad)


@pytest.mark.parametrize("strategy", ["linear", "full"])
def test_predict_api_folder_and_files(strategy: str, bad_dataset: BadDataset, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    run: imagefit.Run = request.getfixturevalue(f"{strategy}_run")
    model = imagefit.load(run.path)
    ds = bad_dataset
    # A folder: image-named files are tried (notes.txt is not offered).
    preds = model.predict(ds.root)
    assert {r["path"] for r in preds} == {str(p) for p in ds.usable}
    check_listed(as_map(preds.skipped.items), in_folders(ds))
    csv_path = preds.to_csv(tmp_path / "folder.csv")
    check_csv(csv_path, ds.usable, in_folders(ds), model.classes)
    # Files named one by one: every one is tried, whatever its extension.
    preds = model.predict(ds.all_files)
    assert {r["path"] for r in preds} == {str(p) for p in ds.usable}
    check_listed(as_map(preds.skipped.items), ds.bad)
    check_csv(preds.to_csv(tmp_path / "files.csv"), ds.usable, ds.bad, model.classes)


def test_predict_cli(full_run: imagefit.Run, bad_dataset: BadDataset, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_csv = tmp_path / "p.csv"
    code, out, err = run_cli(capsys, "predict", full_run.path, *bad_dataset.all_files, "--out", out_csv)
    assert code == 0, err
    text = out + err
    assert f"skipped {len(bad_dataset.bad)} unreadable" in text
    for p in bad_dataset.bad:
        assert shown(p) in text
    assert f"{len(bad_dataset.usable)} predictions" in text
    check_csv(out_csv, bad_dataset.usable, bad_dataset.bad, ["green", "red"])


def test_resumed_full_run_still_lists_bad_files(full_run: imagefit.Run, bad_dataset: BadDataset, tmp_path: Path) -> None:
    """Killed after its last checkpoint: the resumed run trains no epoch, yet lists every bad file."""
    import shutil

    out = tmp_path / "run"
    shutil.copytree(full_run.path, out)
    (out / "imagefit.json").unlink()
    (out / "model.safetensors").unlink()
    run = imagefit.train(None, out=out, resume=True)  # type: ignore[arg-type]
    check_listed(as_map(run.skipped.items), bad_dataset.bad)
    assert run.metrics["n_images"] == full_run.metrics["n_images"]
