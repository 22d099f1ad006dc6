# The two set-up commands of the README: `make serve` and `make test`. Both are idempotent:
# the virtual environment is built once and refreshed only when pyproject.toml changes.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# The local CPU build on this machine kind; installed before anything can ask for a CUDA build.
TORCH_SPEC ?= torch==2.13.0
HOST ?= 127.0.0.1
PORT ?= 7860

.PHONY: serve test install install-test browser

serve: install
	$(VENV)/bin/surgreview serve --demo --host $(HOST) --port $(PORT)

test: install-test browser
	$(PY) -m pytest $(PYTEST_ARGS)

# Debian's Chromium for the end-to-end tests (Playwright drives it; it never downloads a browser).
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

$(VENV)/bin/python:
	python3 -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	$(PIP) install --quiet --disable-pip-version-check "$(TORCH_SPEC)"
	$(PIP) install --quiet --disable-pip-version-check -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) install --quiet --disable-pip-version-check -e ".[test]"
	touch $@
