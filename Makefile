# The two commands of the README: `make demo` and `make test`. Each creates
# .venv and installs what it needs, so a fresh machine needs nothing else.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: demo test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

# One stamp per set of extras; reinstalled when the metadata changes.
$(VENV)/.stamp-%: setup.cfg pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[$*]'
	touch $@

demo: $(VENV)/.stamp-demo
	$(BIN)/emcee-ipp demo --plot demo.png

test: $(VENV)/.stamp-test
	$(BIN)/python -m pytest

bench: $(VENV)/.stamp-bench
	$(BIN)/python benchmarks/bench_pools.py
	$(BIN)/python benchmarks/bench_split.py
	$(BIN)/python benchmarks/bench_overhead.py
	$(BIN)/python benchmarks/bench_startup.py

clean:
	rm -rf $(VENV) *.egg-info demo.png
