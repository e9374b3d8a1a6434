"""End to end in a real browser: headless Chromium opens the page, uploads a photo, sees the label.

Needs Debian's ``chromium`` and ``chromium-driver`` (``apt-get install -y chromium
chromium-driver``) and ``selenium`` (pip); skipped with the reason when any is
missing. No browser is ever downloaded. Chromium is told to resolve no host but
127.0.0.1, so the test also proves the page needs no network.

The screenshot is written under pytest's tmp dir, and copied to
``tests/serve/artifacts/`` when ``IMAGEFIT_ARTIFACTS`` is set.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI

from imagefit.serve.app import create_app
from imagefit.serve.settings import ServeSettings

from .conftest import CAT, DOG

CHROMIUM = Path(os.environ.get("IMAGEFIT_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("IMAGEFIT_CHROMEDRIVER", "/usr/bin/chromedriver"))
ARTIFACTS = Path(__file__).parent / "artifacts"

if not CHROMIUM.is_file() or not CHROMEDRIVER.is_file():
    pytest.skip(
        f"headless browser test needs {CHROMIUM} and {CHROMEDRIVER} (apt-get install -y chromium chromium-driver)", allow_module_level=True
    )
webdriver = pytest.importorskip("selenium.webdriver", reason="headless browser test needs selenium (pip install selenium)")

from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def live_server(serve_app: FastAPI) -> Iterator[str]:
    """uvicorn on 127.0.0.1 with a free port, in a background thread."""
    import uvicorn

    # Its own app (same model): the session TestClient's event loop stays out of it.
    app = create_app(ServeSettings(), model=serve_app.state.model)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))  # bound here, so no other process can take the port first
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="uvicorn-test")
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """Headless Chromium through Debian's chromedriver, with a fresh profile."""
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-default-apps",
        "--window-size=1200,900",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
        # Every host but the test server's address fails to resolve: no traffic leaves the machine.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    except Exception as exc:
        pytest.skip(f"chromium could not start: {str(exc).splitlines()[0][:200]}")
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _errors(driver: object) -> list[dict[str, object]]:
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]  # type: ignore[attr-defined]


def _save(driver: object, tmp_path: Path, name: str) -> Path:
    shot = tmp_path / name
    driver.save_screenshot(str(shot))  # type: ignore[attr-defined]
    if os.environ.get("IMAGEFIT_ARTIFACTS"):
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copy(shot, ARTIFACTS / name)
    return shot


def _wait_for_card(driver: object, index: int, timeout: float = 60) -> object:
    """The index-th finished card (oldest first: the page prepends new ones)."""

    def ready(d: object) -> object:
        cards = d.find_elements(By.CSS_SELECTOR, ".card")  # type: ignore[attr-defined]
        if len(cards) <= index:
            return False
        card = cards[len(cards) - 1 - index]
        return card if "pending" not in (card.get_attribute("class") or "") else False

    return WebDriverWait(driver, timeout).until(ready)


def test_page_classifies_an_uploaded_photo(browser: object, live_server: str, tmp_path: Path) -> None:
    d = browser
    d.get(live_server + "/")  # type: ignore[attr-defined]
    WebDriverWait(d, 30).until(lambda d: "lite0" in d.find_element(By.ID, "model-info").text)
    d.find_element(By.ID, "file-input").send_keys(str(CAT))  # type: ignore[attr-defined]
    card = _wait_for_card(d, 0)
    label = card.find_element(By.CSS_SELECTOR, ".label").text
    prob = card.find_element(By.CSS_SELECTOR, ".prob").text
    bars = card.find_elements(By.CSS_SELECTOR, ".bar")
    shot = _save(d, tmp_path, "serve-page-cat.png")
    assert label == "cats", card.text
    assert prob.endswith("%") and float(prob[:-1]) > 50.0
    assert len(bars) == 2 and bars[0].text.startswith("cats")
    assert card.get_attribute("data-label") == "cats"
    assert "1 of 1 classified" in d.find_element(By.ID, "summary").text  # type: ignore[attr-defined]
    assert shot.stat().st_size > 10_000
    assert _errors(d) == []


def test_page_accepts_a_dropped_photo(browser: object, live_server: str, tmp_path: Path) -> None:
    d = browser
    d.get(live_server + "/")  # type: ignore[attr-defined]
    WebDriverWait(d, 30).until(lambda d: "lite0" in d.find_element(By.ID, "model-info").text)
    payload = base64.b64encode(DOG.read_bytes()).decode()
    d.execute_script(  # type: ignore[attr-defined]
        """
        const bytes = Uint8Array.from(atob(arguments[0]), (c) => c.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], "dog.2000.jpg", { type: "image/jpeg" }));
        document.getElementById("drop").dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
        """,
        payload,
    )
    card = _wait_for_card(d, 0)
    _save(d, tmp_path, "serve-page-dog.png")
    assert card.find_element(By.CSS_SELECTOR, ".label").text == "dogs"
    assert _errors(d) == []


def test_page_shows_a_refused_file(browser: object, live_server: str, tmp_path: Path) -> None:
    d = browser
    d.get(live_server + "/")  # type: ignore[attr-defined]
    bad = tmp_path / "notes.jpg"
    bad.write_bytes(b"this is not a photo")
    d.find_element(By.ID, "file-input").send_keys(str(bad))  # type: ignore[attr-defined]
    card = _wait_for_card(d, 0)
    assert "error" in card.get_attribute("class")
    assert "not an image" in card.find_element(By.CSS_SELECTOR, ".error-text").text
    # The browser reports the 415 itself; nothing else may fail.
    unexpected = [e for e in _errors(d) if "415" not in str(e["message"])]
    assert unexpected == []


def test_docs_render_offline(browser: object, live_server: str, tmp_path: Path) -> None:
    d = browser
    d.get(live_server + "/docs")  # type: ignore[attr-defined]
    try:
        # Swagger UI lists operations as .opblock; the built-in fallback as .op.
        WebDriverWait(d, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".opblock, .op"))
    except TimeoutException:
        pytest.fail(f"/docs did not render: {d.page_source[:500]}")  # type: ignore[attr-defined]
    _save(d, tmp_path, "serve-docs.png")
    assert "/predict" in d.find_element(By.TAG_NAME, "body").text  # type: ignore[attr-defined]
    assert _errors(d) == []
