# The two commands of the README: `make demo` and `make test`. Each creates
# .venv and installs what it needs, so a fresh machine needs nothing else;
# so do `make docs` (the Sphinx site) and `make lint` (ruff and mypy).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: demo test bench docs lint clean sysdeps

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

# One stamp per set of extras; reinstalled when the metadata changes.
$(VENV)/.stamp-%: setup.cfg pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[$*]'
	touch $@

demo: $(VENV)/.stamp-demo
	$(BIN)/emcee-ipp demo --plot demo.png

# Debian packages some tests use: iproute2 (hosts as network namespaces) and
# OpenMPI (engines started by mpiexec). Installed when missing and we are
# root, as on CI; otherwise those tests skip and say why.
SYSDEPS := iproute2 openmpi-bin libopenmpi-dev
sysdeps:
	@{ command -v ip && command -v mpiexec; } >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] \
	  && command -v apt-get >/dev/null && apt-get update -qq \
	  && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSDEPS); } || true

test: $(VENV)/.stamp-test sysdeps
	$(BIN)/python -m pytest

bench: $(VENV)/.stamp-bench
	$(BIN)/python benchmarks/bench_pools.py
	$(BIN)/python benchmarks/bench_split.py
	$(BIN)/python benchmarks/bench_overhead.py
	$(BIN)/python benchmarks/bench_startup.py
	$(BIN)/python benchmarks/bench_channel.py
	$(BIN)/python benchmarks/bench_dynesty.py --functions main
	$(BIN)/python benchmarks/bench_items.py
	$(BIN)/python benchmarks/bench_samplers.py

# The site, warnings as errors; its notebooks run at every build (2 engines each).
SPHINXOPTS ?= -W --keep-going
docs: $(VENV)/.stamp-docs
	$(BIN)/sphinx-build -b html $(SPHINXOPTS) docs docs/_build/html

# ruff (lint and format) over the code; mypy over the public API (setup.cfg).
LINTED := emcee_ipp tests benchmarks docs
lint: $(VENV)/.stamp-lint
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/mypy

clean:
	rm -rf $(VENV) *.egg-info demo.png docs/_build docs/_generated docs/jupyter_execute build dist
