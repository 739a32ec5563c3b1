# make run / make test work on a fresh machine with only python3 and make:
# both create .venv and install the project (editable) with what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-containers lint typecheck unit bench openapi clean browser screenshots

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/pageholder serve

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

# the console's browser tests need Debian's chromium + chromium-driver (installed if root)
browser:
	tests/install-browser.sh

test: lint typecheck browser
	$(BIN)/pytest

# The Dockerfile and docker-compose.yml on a real engine (root; installs what it needs).
test-containers:
	bash tests/containers/run.sh

# README's console screenshots, taken by the browser tests
screenshots: $(STAMP) browser
	PAGEHOLDER_SCREENSHOTS=docs $(BIN)/pytest -q tests/integration/test_console.py

bench: $(STAMP)
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/python -m bench

openapi: $(STAMP)
	$(BIN)/pageholder openapi > openapi/openapi.json

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .pytest_cache .ruff_cache .hypothesis
