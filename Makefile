# Two commands on a fresh machine with Python 3.11+ and make: `make serve`, `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
ARGS   ?=

.PHONY: serve test lint bench install clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

serve: $(STAMP)
	$(VENV)/bin/litestream serve $(ARGS)

test: lint
	$(PY) -m pytest -q $(ARGS)

lint: $(STAMP)
	$(PY) -m ruff check litestream tests loadtest clients
	$(PY) -m mypy --strict litestream

bench: $(STAMP)
	$(VENV)/bin/litestream bench engine

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
