# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install web-vendor browser demo lint test test-fast bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed web-vendor

# ONNX Runtime Web for `imagefit export --format web`, from npm at a pinned version (~14 MiB, not in git).
ORT_WEB_VERSION := 1.30.0
WEB_VENDOR := src/imagefit/web/vendor
web-vendor: $(WEB_VENDOR)/.ort-$(ORT_WEB_VERSION)
$(WEB_VENDOR)/.ort-$(ORT_WEB_VERSION):
	@command -v npm >/dev/null 2>&1 || { echo "note: npm not found; imagefit export --format web will not work"; exit 0; }; \
	  tmp=$$(mktemp -d) && (cd $$tmp && npm pack -q onnxruntime-web@$(ORT_WEB_VERSION) >/dev/null) && \
	  tar -xzf $$tmp/onnxruntime-web-$(ORT_WEB_VERSION).tgz -C $$tmp && mkdir -p $(WEB_VENDOR) && \
	  cp $$tmp/package/dist/ort.wasm.min.js $$tmp/package/dist/ort-wasm-simd-threaded.mjs $$tmp/package/dist/ort-wasm-simd-threaded.wasm $(WEB_VENDOR)/ && \
	  cp $$tmp/package/package.json $(WEB_VENDOR)/ && touch $@ || echo "note: onnxruntime-web not vendored; imagefit export --format web will not work"; \
	  rm -rf $$tmp

demo: install
	$(VENV)/bin/imagefit demo

# Headless Chromium + ChromeDriver (Debian) for the browser tests; skipped, not failed, without them.
browser:
	@command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || \
	  (command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
	   (apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || \
	    (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium chromium-driver >/dev/null 2>&1))) || \
	  echo "note: chromium/chromedriver not installed; browser tests will be skipped"

# Lint and format check (ruff) and types (mypy, on src/): before the tests, so CI fails fast on them.
lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

# Everything CI runs: lint, the fast suite, then the slow real-photo tests.
test: install browser lint
	$(PY) -m pytest -q -m "not slow"
	$(PY) -m pytest -q -m slow

test-fast: install
	$(PY) -m pytest -q -m "not slow"

bench: install
	$(PY) bench/engines.py
	$(PY) bench/train_linear.py
	$(PY) bench/predict.py
	$(PY) bench/load_serve.py

clean:
	rm -rf $(VENV) runs build src/*.egg-info
