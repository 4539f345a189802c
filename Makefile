# Two commands do all set-up on a fresh machine:
#   make demo   - the engine's main job on the embedded default (SQLite, no Redis)
#   make test   - the whole test suite, with ruff and mypy
# Each creates its own virtual environment in .venv from pyproject.toml.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev

.PHONY: demo test lint venv clean bench-codec autobahn

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/pubquiz-engine demo

lint: $(STAMP)
	$(VENV)/bin/ruff check pubquiz_engine tests bench
	$(VENV)/bin/mypy

test: lint
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

# WebSocket conformance (bench/autobahn/run.py): exit 1 on any failed case, 2 without Python 2.7.
AUTOBAHN_READERS ?= auto
autobahn: $(STAMP)
	$(PY) -m bench.autobahn.run --readers $(AUTOBAHN_READERS)

clean:
	rm -rf $(VENV) build *.egg-info
