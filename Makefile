# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install demo test test-fast bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/imagefit demo

# Everything CI runs: the fast suite, then the slow real-photo tests.
test: install
	$(PY) -m pytest -q -m "not slow"
	$(PY) -m pytest -q -m slow

test-fast: install
	$(PY) -m pytest -q -m "not slow"

bench: install
	$(PY) bench/train_linear.py

clean:
	rm -rf $(VENV) runs build src/*.egg-info
