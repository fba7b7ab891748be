# Two commands for a fresh clone: `make demo` and `make test`.
# Both create (or reuse) a virtual environment in .venv and install what they need.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch is installed before the package so pip never resolves the package's loose
# `torch>=2.2` to the newest (multi-GB CUDA) build on a CPU machine. Override for a GPU
# machine, e.g.  make demo TORCH_SPEC="torch==2.13.0 --index-url <your CUDA index>".
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.momentlens-installed
DEMO_OUT ?= demo_out

.PHONY: demo test lint clean-venv help

help:
	@echo "make demo   - generate the synthetic dataset and run the end-to-end demo into $(DEMO_OUT)/"
	@echo "make test   - run the test suite"
	@echo "make lint   - ruff"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --disable-pip-version-check -q $(TORCH_SPEC)
	$(PY) -m pip install --disable-pip-version-check -q -e ".[dev]"
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/momentlens demo --out $(DEMO_OUT)

test: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks

clean-venv:
	rm -rf $(VENV)
