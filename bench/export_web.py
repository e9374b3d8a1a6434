"""The exported web page in headless Chromium: what it loads, how long it takes to start, time per photo.

Trains lite0 ``linear`` on the bundled sample, exports ``--format web``, opens ``index.html`` from
file:// (no network), and classifies the 24 sample validation photos one after another in
ONNX Runtime Web (WebAssembly, one thread): the time per photo is decode + resize + inference as the
page measures it (``performance.now()``), the first photo left out (warm-up). Writes the "Web export"
section of BENCHMARKS.md. Usage: ``python bench/export_web.py``.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import ROOT, provenance, sample_model, update_section

# What index.html loads (model.onnx is in the folder for other uses, not loaded by the page).
LOADED = ("index.html", "style.css", "ort-runtime.js", "model.js", "app.js")


def browser(profile: Path):  # type: ignore[no-untyped-def]
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", f"--user-data-dir={profile}"):
        opts.add_argument(arg)
    opts.add_argument("--host-resolver-rules=MAP * ~NOTFOUND")
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


def main() -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from imagefit.export import export_model

    photos = sorted((ROOT / "src" / "imagefit" / "sample_data" / "val").rglob("*.jpg"))
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        model = sample_model(tmp)
        site = export_model(model.path, tmp / "site", "web")
        sizes = {name: (site / name).stat().st_size for name in LOADED}
        d = browser(tmp / "profile")
        try:
            t0 = time.perf_counter()
            d.get((site / "index.html").as_uri())
            WebDriverWait(d, 300).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
            ready = time.perf_counter() - t0
            d.find_element(By.ID, "file-input").send_keys("\n".join(str(p) for p in photos))
            WebDriverWait(d, 600).until(lambda d: d.execute_script("return window.imagefitResults.length") == len(photos))
            ms = [r["ms"] for r in d.execute_script("return window.imagefitResults")]
        finally:
            d.quit()
    total = sum(sizes.values())
    per = ms[1:]
    body = (
        f"lite0 `linear` on the bundled sample, exported with `imagefit export RUN site/ --format web`, opened from file:// "
        "in headless Chromium (Debian), ONNX Runtime Web 1.30.0 WebAssembly, one thread. "
        "Measured on a busy shared machine (other jobs running).\n\n"
        "| figure | value |\n|---|---|\n"
        f"| page load size (everything index.html loads) | {total / 2**20:.1f} MiB ({', '.join(f'{k} {v / 2**20:.2f}' for k, v in sizes.items())}) |\n"
        f"| open to ready (decode runtime + model, create session) | {ready:.1f} s |\n"
        f"| time per photo (decode + resize + inference), median of {len(per)} | {statistics.median(per):.0f} ms |\n"
        f"| time per photo, min / max | {min(per):.0f} / {max(per):.0f} ms |\n"
        f"| first photo (warm-up) | {ms[0]:.0f} ms |\n\n"
        "The model and the runtime travel base64-encoded inside classic scripts (about 4/3 of their size) because "
        f"browsers refuse `fetch` and module scripts from file://.\n\n{provenance()}"
    )
    update_section("export-web", "Web export (in-browser, WASM)", body)
    print(body)


if __name__ == "__main__":
    main()
