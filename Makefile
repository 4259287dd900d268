# hpcbench: `make bench` runs the quick suite on this node; `make test` runs the tests.
# Both create the virtualenv on first use and install what they need.
#
# torch: on a node that already has torch (e.g. a CUDA build on a GPU node),
# the venv reuses it (SYSTEM_TORCH=auto finds it with the system python3);
# force with SYSTEM_TORCH=1, or install $(TORCH) into the venv with SYSTEM_TORCH=0.

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
SYSTEM_TORCH ?= auto
SUITE ?= suites/quick.toml
BENCH_ARGS ?=
PY := $(VENV)/bin/python

.PHONY: bench test lint fidelity benchmarks install clean gpu-check

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@use_system=$(SYSTEM_TORCH); \
	if [ "$$use_system" = auto ]; then \
	  if $(PYTHON) -c 'import torch' >/dev/null 2>&1; then use_system=1; else use_system=0; fi; \
	fi; \
	if [ "$$use_system" = 1 ]; then \
	  echo "make: using the node's torch ($$($(PYTHON) -c 'import torch; print(torch.__version__)'))"; \
	  $(PYTHON) -m venv --system-site-packages $(VENV); \
	else \
	  $(PYTHON) -m venv $(VENV) && $(PY) -m pip install --quiet "$(TORCH)"; \
	fi
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $@

bench: install
	$(VENV)/bin/hpcbench run $(SUITE) $(BENCH_ARGS)

# Every GPU code path once (GEMM per dtype incl. fp8, a shape sweep, SDPA forward/backward) with
# its correctness checks, on every GPU at once; prints the verdict table. SKIPs on a node without GPU.
gpu-check: install
	$(VENV)/bin/hpcbench run suites/gpu-check.toml $(BENCH_ARGS)

test: install
	$(PY) -m pytest -q tests

lint: install
	$(VENV)/bin/ruff check hpcbench tests benchmarks

# The project's own fidelity benchmarks (not part of make test): they print
# measured ratios side by side, e.g. cpu_membw against a C STREAM reference.
fidelity benchmarks: install
	$(PY) -m pytest -s -q benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .benchmarks
