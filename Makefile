# Two entry points that work on a fresh machine (they create .venv and install what they need):
#   make demo  - the main job on the built-in defaults (device install: no TensorFlow)
#   make test  - the test suite (workstation install: TensorFlow + test tools)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test bench soak clean arm64-check

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.edge-installed: $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[edge]'
	touch $@

$(VENV)/.dev-installed: $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[train,dev,cluster]'
	touch $(VENV)/.edge-installed $@

# The demo also writes the run's report, which needs matplotlib (the report extra).
$(VENV)/.demo-installed: $(VENV)/.edge-installed
	$(BIN)/python -m pip install --quiet -e '.[edge,report]'
	touch $@

demo: $(VENV)/.demo-installed
	$(BIN)/rustseg demo

# pytest exits 5 when it collects nothing; that must fail CI, not pass silently.
test: $(VENV)/.dev-installed
	@$(BIN)/python -m pytest -q; status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; \
	exit $$status

bench: $(VENV)/.dev-installed
	$(BIN)/python -m pip install --quiet -e '.[bench,peers]'
	$(BIN)/python benchmarks/run_all.py

soak: $(VENV)/.edge-installed
	$(BIN)/python benchmarks/soak.py --frames 20000 --json benchmarks/results/soak.json

# The project installed and run on Debian arm64 under qemu (as root; see deploy/arm64/check.sh).
# ARM64_SUITE=bullseye checks Python 3.9. The root file system and pip's cache are kept in
# /var/cache/rustseg-arm64, so only the first run is slow.
ARM64_SUITE ?= bookworm
arm64-check: $(VENV)/.edge-installed
	HOST_PYTHON=$(abspath $(BIN)/python) deploy/arm64/check.sh $(ARM64_SUITE)

clean:
	rm -rf $(VENV) out build *.egg-info .pytest_cache
