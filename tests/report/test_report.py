"""Reports: report.html + PNGs from train, evaluate, inspect and compare, and how they render in a browser.

The browser test needs Debian's ``chromium`` (``apt-get install -y chromium``);
it is skipped, with that reason, where ``/usr/bin/chromium`` is absent. No
browser is ever downloaded, and Chromium resolves no host at all, so the test
also proves the report needs no network.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imagefit.report import plots

CHROMIUM = Path(os.environ.get("IMAGEFIT_CHROMIUM", "/usr/bin/chromium"))
RUN_PNGS = ("history.png", "confusion.png", "predictions.png", "reliability.png")
IMG_SRC = re.compile(r'<img [^>]*src="([^"]*)"')


def check_self_contained(html_path: Path, min_images: int) -> list[Image.Image]:
    """The page loads nothing from outside: every image is an inline PNG that decodes."""
    text = html_path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert "<script" not in text
    assert not re.search(r'(src|href)="(?!data:)', text), "the report references an external file"
    srcs = IMG_SRC.findall(text)
    assert len(srcs) >= min_images
    images = []
    for src in srcs:
        assert src.startswith("data:image/png;base64,")
        img = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        img.load()
        assert img.format == "PNG" and img.width > 100 and img.height > 100
        images.append(img)
    return images


def test_train_writes_a_report(trained_run: Path) -> None:
    for name in RUN_PNGS:
        png = Image.open(trained_run / name)
        assert png.format == "PNG" and png.width > 200
    html = (trained_run / "report.html").read_text(encoding="utf-8")
    check_self_contained(trained_run / "report.html", min_images=len(RUN_PNGS))
    metrics = json.loads((trained_run / "metrics.json").read_text())
    # The metrics table, with the dummy baseline and the calibration figures.
    assert "dummy baseline" in html
    assert f"{metrics['accuracy']:.4f}" in html
    assert f"{metrics['log_loss']:.4f}" in html
    assert f"{metrics['baseline']['log_loss']:.4f}" in html
    assert f"{metrics['calibration']['log_loss_before']:.4f}" in html
    assert "Reliability diagram" in html and "Training history" in html and "Confusion matrix" in html


def test_history_plot_reads_csv_rows_and_marks_lr_changes() -> None:
    rows = [
        {
            "phase": "head",
            "epoch": str(i),
            "loss": str(1 / (i + 1)),
            "accuracy": str(0.5 + i / 20),
            "val_loss": str(1.2 / (i + 1)),
            "val_accuracy": "0.7",
            "lr": lr,
        }
        for i, lr in enumerate(["0.003", "0.003", "0.0009", "0.0009"])
    ] + [{"phase": "backbone", "epoch": "0", "loss": "0.1", "accuracy": "0.95", "val_loss": "0.2", "val_accuracy": "0.9", "lr": "0.0001"}]
    png = Image.open(io.BytesIO(plots.history_plot(rows)))
    assert png.width > 500
    # An empty history (a resumed run that had nothing left to do) still draws.
    assert plots.history_plot([]).startswith(b"\x89PNG")


def test_prediction_grid_puts_mistakes_first(tmp_path: Path, sample_data: Path) -> None:
    paths = sorted((sample_data / "val" / "cats").iterdir())[:6]
    y = np.zeros(6, dtype=int)
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.45, 0.55], [0.99, 0.01], [0.7, 0.3]])
    items = plots.prediction_items(paths, y, probs, ["cats", "dogs"], n=4)
    assert len(items) == 4
    # Wrong ones first, most confident first, in red with the true class.
    assert items[0]["path"] == paths[1] and items[1]["path"] == paths[3]
    assert items[0]["color"] == plots.RED and "(true: cats)" in items[0]["caption"]
    assert all(it["color"] == plots.GREEN for it in items[2:])
    # An unreadable photo gets a placeholder, not a crash.
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    assert plots.image_grid([*items, {"path": bad, "caption": "bad"}]).startswith(b"\x89PNG")


def test_evaluate_writes_a_report(cli, trained_run: Path, sample_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "ev" / "metrics.json"
    code, _, err = cli("evaluate", trained_run, sample_data / "val", "--out", out)
    assert code == 0, err
    metrics = json.loads(out.read_text())
    assert {"ece", "calibration"} <= set(metrics)
    folder = tmp_path / "ev" / "metrics"
    for name in ("confusion.png", "predictions.png", "reliability.png"):
        assert (folder / name).is_file()
    check_self_contained(folder / "report.html", min_images=3)
    html = (folder / "report.html").read_text(encoding="utf-8")
    assert "dummy baseline" in html and f"{metrics['log_loss']:.4f}" in html
    assert "calibration: T" in err and "report:" in err


def test_inspect_report(cli, sample_data: Path, tmp_path: Path) -> None:
    dest = tmp_path / "insp" / "data.html"
    code, _, err = cli("inspect", sample_data, "--report", dest)
    assert code == 0, err
    images = check_self_contained(dest, min_images=1)
    assert (tmp_path / "insp" / "data-samples.png").is_file()
    assert images[0].height > 300  # one row per class
    html = dest.read_text(encoding="utf-8")
    assert "cats" in html and "dogs" in html and "Samples per class" in html


def test_compare_runs(cli, trained_run: Path, tmp_path: Path) -> None:
    other = tmp_path / "other" / trained_run.name
    shutil.copytree(trained_run, other)
    out = tmp_path / "cmp"
    code, stdout, err = cli("compare", trained_run, other, "--out", out, "--json")
    assert code == 0, err
    rows = json.loads(stdout)
    assert len(rows) == 2 and rows[0]["name"] != rows[1]["name"]  # same folder name, told apart
    meta = json.loads((trained_run / "imagefit.json").read_text())
    assert rows[0]["accuracy"] == meta["metrics"]["val"]["accuracy"]
    assert rows[0]["model"] == "lite0" and rows[0]["strategy"] == "linear" and rows[0]["seconds"] > 0
    assert (out / "compare.png").is_file() and (out / "compare.csv").read_text().count("\n") == 3
    check_self_contained(out / "report.html", min_images=1)
    code, _, err = cli("compare", trained_run, tmp_path / "missing")
    assert code != 0 and "error:" in err


def _chromium(args: list[str], user_data: Path) -> subprocess.CompletedProcess[str]:
    base = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--host-resolver-rules=MAP * ~NOTFOUND",  # no host resolves: the page must need no network
        f"--user-data-dir={user_data}",
        "--enable-logging=stderr",
        "--v=0",
    ]
    return subprocess.run(base + args, capture_output=True, text=True, timeout=120)


# Injected first in <head>: counts every script error, console error/warning
# and failed resource (the capture phase sees <img> errors too), then, once the
# page has loaded, how many images decoded.
PROBE = """<script>
window.__errors = 0;
window.addEventListener('error', function () { window.__errors++; }, true);
['error', 'warn'].forEach(function (k) { var f = console[k]; console[k] = function () { window.__errors++; f.apply(console, arguments); }; });
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute('data-probe', 'images=' + imgs.length + ';loaded=' + ok + ';errors=' + window.__errors);
});
</script>"""


@pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"browser test needs {CHROMIUM} (apt-get install -y chromium)")
def test_report_renders_in_headless_chromium(trained_run: Path, tmp_path: Path) -> None:
    report = trained_run / "report.html"
    # 1. The report as it is: a screenshot, and no console message at all (the page has no script).
    shot = tmp_path / "report.png"
    res = _chromium([f"--screenshot={shot}", "--window-size=1280,4000", report.as_uri()], tmp_path / "profile1")
    assert res.returncode == 0, res.stderr[-2000:]
    console = [ln for ln in res.stderr.splitlines() if ":CONSOLE" in ln]
    assert not console, f"console messages: {console}"
    img = Image.open(shot)
    assert img.size == (1280, 4000)
    # Not a blank page: the figures put plenty of distinct colours on it.
    assert len(img.convert("RGB").resize((320, 1000)).getcolors(1_000_000) or []) > 500
    # 2. A copy with a probe script: every image decoded and no error of any kind.
    probe = tmp_path / "probe.html"
    probe.write_text(report.read_text(encoding="utf-8").replace("<head>", "<head>" + PROBE, 1), encoding="utf-8")
    res = _chromium(["--virtual-time-budget=5000", "--dump-dom", probe.as_uri()], tmp_path / "profile2")
    assert res.returncode == 0, res.stderr[-2000:]
    m = re.search(r'data-probe="images=(\d+);loaded=(\d+);errors=(\d+)"', res.stdout)
    assert m, f"probe did not run: {res.stdout[:500]}"
    n, loaded, errors = map(int, m.groups())
    assert n >= len(RUN_PNGS) and loaded == n and errors == 0
    assert not [ln for ln in res.stderr.splitlines() if ":CONSOLE" in ln]


@pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"browser test needs {CHROMIUM} (apt-get install -y chromium)")
def test_browser_probe_catches_broken_pages(tmp_path: Path) -> None:
    """The browser check above can fail: a broken image and a script error are seen."""
    page = tmp_path / "bad.html"
    page.write_text(f'<!DOCTYPE html><html><head>{PROBE}</head><body><img src="missing.png"><script>nope();</script></body></html>')
    res = _chromium(["--virtual-time-budget=3000", "--dump-dom", page.as_uri()], tmp_path / "profile")
    m = re.search(r'data-probe="images=(\d+);loaded=(\d+);errors=(\d+)"', res.stdout)
    assert m, res.stdout[:500]
    n, loaded, errors = map(int, m.groups())
    assert n == 1 and loaded == 0 and errors >= 2
    assert [ln for ln in res.stderr.splitlines() if ":CONSOLE" in ln]


# -- issue 13: the report shows the values actually used ---------------------------------------------
def test_settings_table_shows_resolved_phase_values_not_none() -> None:
    from imagefit.report.html import settings_rows

    train_cfg = {"strategy": "finetune", "lr": None, "epochs": None, "head_lr": None, "schedule": "plateau"}
    resolved = {"head": {"epochs": 60, "lr": 0.003, "batch_size": 128}, "images": {"epochs": 3, "lr": 0.0005, "batch_size": 32}}
    rows = dict(settings_rows({"name": "lite0"}, train_cfg, resolved))
    assert rows["head.lr"] == "0.003" and rows["images.lr"] == "0.0005" and rows["images.epochs"] == "3"
    assert "None" not in rows.values() and "train.lr" not in rows


def test_history_title_names_each_phase_lr(monkeypatch: pytest.MonkeyPatch) -> None:
    titles: list[str] = []
    from matplotlib.figure import Figure

    real = Figure.suptitle
    monkeypatch.setattr(Figure, "suptitle", lambda self, t, **k: titles.append(t) or real(self, t, **k))
    rows = [{"phase": "head", "loss": 1, "accuracy": 0.5, "val_loss": 1, "val_accuracy": 0.5, "lr": 0.01}] * 3
    rows += [{"phase": "backbone", "loss": 1, "accuracy": 0.5, "val_loss": 1, "val_accuracy": 0.5, "lr": 0.0005}]
    plots.history_plot(rows)
    plots.history_plot(rows[:2])
    assert titles == ["training history (head lr 0.01, backbone lr 0.0005)", "training history (initial learning rate 0.01)"]


def test_lr_find_plot_is_a_png() -> None:
    png = plots.lr_find_plot([1e-5, 1e-4, 1e-3, 1e-2], [1.0, 0.9, 0.5, 2.0], 1e-3)
    assert Image.open(io.BytesIO(png)).width > 300
