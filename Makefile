# Two commands for a fresh clone: `make demo` and `make test`.
# Both create (or reuse) a virtual environment in .venv and install what they need.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch is installed before the package so pip never resolves the package's loose
# `torch>=2.2` to the newest (multi-GB CUDA) build on a CPU machine. Override for a GPU
# machine, e.g.  make demo TORCH_SPEC="torch==2.13.0 --index-url <your CUDA index>".
TORCH_SPEC ?= torch==2.13.0
# The extras the test suite uses. servetest brings Playwright, which drives the system
# Chromium set up by the browser target below (never `playwright install`: nothing is
# downloaded). torchcodec is added by the codec target, which also needs FFmpeg's shared
# libraries from the system.
EXTRAS ?= dev,tensorboard,onnx,serve,servetest
STAMP := $(VENV)/.momentlens-installed
DEMO_OUT ?= demo_out
# Extra pytest arguments, e.g.  make test PYTEST_ARGS="-m browser"
PYTEST_ARGS ?=

.PHONY: demo test lint browser codec clean-venv help

help:
	@echo "make demo   - generate the synthetic dataset and run the end-to-end demo into $(DEMO_OUT)/"
	@echo "make test   - run the test suite (installs headless Chromium for the report tests if missing)"
	@echo "make lint   - ruff"

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --disable-pip-version-check -q $(TORCH_SPEC)
	$(PY) -m pip install --disable-pip-version-check -q -e ".[$(EXTRAS)]"
	@touch $(STAMP)

# Headless Chromium renders the HTML report in the browser tests. The tests look for
# `chromium` on PATH, and `make test` puts $(VENV)/bin first on it, so this links the
# browser in there: the one on PATH, else the one the Debian package installed (a PATH
# that hides /usr/bin does not lose it), else one installed now with apt-get when this
# is a Debian machine and we are root. Anything else stops with what to run.
browser: $(STAMP)
	@exe=$$(command -v chromium || command -v chromium-browser || true); \
	pkg_exe() { dpkg-query -L chromium 2>/dev/null | grep -m1 '/bin/chromium$$' || true; }; \
	[ -n "$$exe" ] || exe=$$(pkg_exe); \
	if [ -z "$$exe" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing headless Chromium for the browser tests: apt-get install chromium"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
		exe=$$(pkg_exe); \
	fi; \
	if [ -z "$$exe" ] || [ ! -x "$$exe" ]; then \
		echo "make test needs headless Chromium: install it (Debian: sudo apt-get install chromium) or put a chromium binary on PATH, then run make test again" >&2; \
		exit 1; \
	fi; \
	[ "$$exe" -ef $(VENV)/bin/chromium ] || ln -sfn "$$exe" $(VENV)/bin/chromium

# The optional torchcodec backend, so that its test runs: it loads the system's FFmpeg
# libraries (Debian: the ffmpeg package, installed here with apt-get when root), then the
# [torchcodec] extra (torchcodec 0.13.0, the build that works with torch 2.13). Where
# neither can be had, it says so and the suite runs without that backend (its test skips).
codec: $(STAMP)
	@if ! $(PY) -c "import torchcodec.decoders" >/dev/null 2>&1; then \
		if ! ldconfig -p 2>/dev/null | grep -q 'libavcodec\.so' && [ "$$(id -u)" = 0 ] \
				&& command -v apt-get >/dev/null 2>&1; then \
			echo "installing FFmpeg's libraries for the torchcodec backend: apt-get install ffmpeg"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null; \
		fi; \
		$(PY) -m pip install --disable-pip-version-check -q -e ".[torchcodec]" || true; \
		$(PY) -c "import torchcodec.decoders" >/dev/null 2>&1 || \
			echo "note: torchcodec does not load here (Debian: apt-get install ffmpeg); its test will skip" >&2; \
	fi

demo: $(STAMP)
	$(VENV)/bin/momentlens demo --out $(DEMO_OUT)

test: $(STAMP) browser codec
	$(VENV)/bin/ruff check src tests benchmarks
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks

clean-venv:
	rm -rf $(VENV)
