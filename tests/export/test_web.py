"""``--format web`` in headless Chromium, opened from file://: the page's answers are predict's.

Needs Debian's ``chromium`` + ``chromium-driver`` (``make browser``), selenium, and ONNX
Runtime Web vendored by ``make web-vendor``; skipped with the reason when any is missing.
Every host name fails to resolve in the browser, so the page is shown to need no network.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import imagefit
from imagefit.export.web import RUNTIME_FILES, VENDOR

from .conftest import exported

CHROMIUM = Path(os.environ.get("IMAGEFIT_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("IMAGEFIT_CHROMEDRIVER", "/usr/bin/chromedriver"))

if not CHROMIUM.is_file() or not CHROMEDRIVER.is_file():
    pytest.skip(f"browser test needs {CHROMIUM} and {CHROMEDRIVER} (make browser)", allow_module_level=True)
if not all((VENDOR / f).is_file() for f in RUNTIME_FILES):
    pytest.skip(f"ONNX Runtime Web is not vendored in {VENDOR} (make web-vendor)", allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver", reason="browser test needs selenium")

from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-extensions",
        "--window-size=1200,900",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
        "--host-resolver-rules=MAP * ~NOTFOUND",
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    except Exception as exc:
        pytest.skip(f"chromium could not start: {str(exc).splitlines()[0][:200]}")
    driver.set_page_load_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.mark.slow
def test_page_classifies_photos_offline_as_predict_does(
    browser: object, trained_run: Path, exports: Path, sample_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = exported(trained_run, exports, "site", "web")
    assert {p.name for p in site.iterdir()} == {"index.html", "app.js", "style.css", "model.onnx", "model.js", "ort-runtime.js"}
    photos = sorted((sample_data / "val" / "cats").glob("*.jpg"))[:2] + sorted((sample_data / "val" / "dogs").glob("*.jpg"))[:2]
    d = browser
    d.get(site.joinpath("index.html").as_uri())  # type: ignore[attr-defined]
    WebDriverWait(d, 180).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))
    assert d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1", d.find_element(By.ID, "model-info").text  # type: ignore[attr-defined]
    assert "classes: cats, dogs" in d.find_element(By.ID, "model-info").text  # type: ignore[attr-defined]
    d.find_element(By.ID, "file-input").send_keys("\n".join(str(p) for p in photos))  # type: ignore[attr-defined]
    WebDriverWait(d, 300).until(lambda d: d.execute_script("return window.imagefitResults.length") == len(photos))
    answers = {r["name"]: r for r in d.execute_script("return window.imagefitResults")}  # type: ignore[attr-defined]
    monkeypatch.setenv("IMAGEFIT_PRECISION", "fp32")  # what the exported graph computes
    expected = imagefit.load(trained_run).predict(photos)
    for rec in expected:
        got = answers[Path(rec["path"]).name]
        assert "error" not in got, got
        assert got["label"] == rec["label"]
        diff = np.abs(np.array([got["probabilities"][c] for c in expected.classes]) - np.array(list(rec["probabilities"].values())))
        assert diff.max() < 1e-3, (rec["path"], got, rec)
    cards = d.find_elements(By.CSS_SELECTOR, ".card")  # type: ignore[attr-defined]
    assert len(cards) == len(photos) and all(len(c.find_elements(By.CSS_SELECTOR, ".bar")) == 2 for c in cards)
    assert "4 of 4 classified" in d.find_element(By.ID, "summary").text  # type: ignore[attr-defined]
    assert [e for e in d.get_log("browser") if e["level"] == "SEVERE"] == []  # type: ignore[attr-defined]


@pytest.mark.slow
def test_page_reports_a_file_it_cannot_decode(browser: object, trained_run: Path, exports: Path, tmp_path: Path) -> None:
    site = exported(trained_run, exports, "site", "web")
    bad = tmp_path / "notes.jpg"
    bad.write_bytes(b"this is not a photo")
    d = browser
    d.get(site.joinpath("index.html").as_uri())  # type: ignore[attr-defined]
    WebDriverWait(d, 180).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
    d.find_element(By.ID, "file-input").send_keys(str(bad))  # type: ignore[attr-defined]
    WebDriverWait(d, 60).until(lambda d: d.execute_script("return window.imagefitResults.length") == 1)
    card = d.find_element(By.CSS_SELECTOR, ".card")  # type: ignore[attr-defined]
    assert "error" in card.get_attribute("class")
    assert card.find_element(By.CSS_SELECTOR, ".label").text == "not classified"
