# hpcbench: `make bench` runs the quick suite on this node; `make test` runs the tests.
# Both install the system tools they need first (scripts/ensure_tools.py: as root with apt-get or
# dnf; otherwise they stop at once with the one command to run), then create the virtualenv on
# first use and install what they need.
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
# e.g. "--no-index --find-links wheels" on a node without network (see `make wheels`)
PIP_ARGS ?=
WHEELS ?= wheels
PY_VERSION ?=
PY := $(VENV)/bin/python

.PHONY: bench test lint fidelity benchmarks install clean gpu-check gpu-verify wheels tools tools-bench tools-test mutants

# System tools (fio, nvme-cli for bench; also iperf3, Slurm, munge, node_exporter for test).
tools-bench:
	@$(PYTHON) scripts/ensure_tools.py bench

tools-test:
	@$(PYTHON) scripts/ensure_tools.py test

# Everything a bundled suite may run on a node (also iperf3 and perftest's ib_write_bw/ib_read_lat
# for the network checks): before `hpcbench run acceptance` on a new node.
tools:
	@$(PYTHON) scripts/ensure_tools.py suites

install: $(VENV)/.installed

# The runtime (bench, gpu-check). With the node's torch the venv also sees the node python's own
# packages: where that python is itself a venv (uv, a vendor's image), --system-site-packages
# reaches only its base interpreter, so a .pth file adds the venv's site-packages; the venv's own
# setuptools (Python < 3.12 bundles an old one) goes, so that it cannot shadow the node's (torch
# requires a recent one, and a node without network cannot fetch it).
$(VENV)/.installed: pyproject.toml
	@use_system=$(SYSTEM_TORCH); \
	if [ "$$use_system" = auto ]; then \
	  if $(PYTHON) -c 'import torch' >/dev/null 2>&1; then use_system=1; else use_system=0; fi; \
	fi; \
	if [ "$$use_system" = 1 ]; then \
	  echo "make: using the node's torch ($$($(PYTHON) -c 'import torch; print(torch.__version__)'))"; \
	  $(PYTHON) -m venv --system-site-packages $(VENV) && \
	  $(PYTHON) -c 'import site, sys; sys.prefix != sys.base_prefix and print(*site.getsitepackages(), sep="\n")' \
	    > "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/_hpcbench_node_site.pth" && \
	  $(PY) -m pip uninstall --quiet --yes setuptools 2>/dev/null; \
	else \
	  $(PYTHON) -m venv $(VENV) && $(PY) -m pip install --quiet $(PIP_ARGS) "$(TORCH)"; \
	fi
	$(PY) -m pip install --quiet $(PIP_ARGS) -e .
	@touch $@

# The tests' tools on top (test, lint, fidelity).
$(VENV)/.installed-test: $(VENV)/.installed
	$(PY) -m pip install --quiet $(PIP_ARGS) -e '.[test]'
	@touch $@

# On a machine with network: the wheels `make bench` and `make gpu-check` need besides torch
# (the runtime dependencies, the build backend and its editable-install helper), for PY_VERSION (default: this python's), into
# WHEELS; copy the folder to the nodes and pass PIP_ARGS="--no-index --find-links WHEELS".
wheels:
	@mkdir -p $(WHEELS)
	$(PYTHON) -c 'import sys; t = __import__("tomllib" if sys.version_info >= (3, 11) else "tomli"); \
	  d = t.load(open("pyproject.toml", "rb")); \
	  reqs = d["project"]["dependencies"] + d["build-system"]["requires"] + ["editables"]; \
	  print(*[r for r in reqs if not r.startswith("torch")], sep="\n")' > $(WHEELS)/requirements.txt
	$(PYTHON) -m pip download --quiet --dest $(WHEELS) --only-binary=:all: \
	  $(if $(PY_VERSION),--python-version $(PY_VERSION)) -r $(WHEELS)/requirements.txt
	@echo "make: $$(ls $(WHEELS)/*.whl | wc -l) wheels in $(WHEELS) ($$(du -sh $(WHEELS) | cut -f1))"

# make's runs keep their records in the checkout (results/<host>/), unless HPCBENCH_OUTPUT says otherwise
BENCH_OUTPUT ?= $(if $(HPCBENCH_OUTPUT),$(HPCBENCH_OUTPUT),$(CURDIR)/results)

bench: tools-bench install
	$(VENV)/bin/hpcbench run $(SUITE) --output $(BENCH_OUTPUT) $(BENCH_ARGS)

# Every GPU code path once (GEMM per dtype incl. fp8, a shape sweep, SDPA forward/backward) with
# its correctness checks, on every GPU at once; prints the verdict table. SKIPs on a node without GPU.
gpu-check: install
	$(VENV)/bin/hpcbench run suites/gpu-check.toml --output $(BENCH_OUTPUT) $(BENCH_ARGS)

# Every GPU path of burn and memtest once on GPU 0, with the checks that prove it (under 6 minutes
# on one H200; scripts/gpu_verify.py); one line and exit 3 on a machine without a GPU.
gpu-verify: install
	$(PY) scripts/gpu_verify.py $(GPU_VERIFY_ARGS)

# HPCBENCH_REQUIRE_SERVICES: a test that needs a tool or service this machine lacks fails, never skips
test: tools-test $(VENV)/.installed-test
	HPCBENCH_REQUIRE_SERVICES=1 $(PY) -m pytest -q tests

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check hpcbench tests benchmarks

# The project's own fidelity benchmarks (not part of make test): they print
# measured ratios side by side, e.g. cpu_membw against a C STREAM reference.
fidelity benchmarks: $(VENV)/.installed-test
	$(PY) -m pytest -s -q benchmarks

# Unit and factor mistakes in the reported numbers, each applied to a temporary copy of the tree
# against the tests that must catch it (benchmarks/mutants.py); fails when one survives
mutants: $(VENV)/.installed-test
	$(PY) benchmarks/mutants.py

clean:
	rm -rf $(VENV) .pytest_cache .benchmarks
