# `make demo`, `make test` and `make bench` create .venv on first use (and again when the
# requirements change), installing the tested versions of constraints.txt.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-stamp
BIN := $(VENV)/bin

.PHONY: demo test bench clean

PIP_INSTALL := $(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt

$(STAMP): pyproject.toml setup.py constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@# the distribution was called "fedsim" before it became "fedsim-ssl": drop it from an older .venv
	@$(BIN)/python -m pip uninstall --quiet --yes fedsim >/dev/null 2>&1 || true
	$(PIP_INSTALL) -e ".[test,docs]"
	@touch $@

demo: $(STAMP)
	$(BIN)/fedsim run --strategy ldawa --clients 1000 --config simulations/quickstart.yaml --out runs/demo-$$(date +%Y%m%d-%H%M%S)

# The suite runs on TEST_WORKERS pytest-xdist workers (each with its own kept Ray cluster):
# most slow tests wait on Ray start-ups and subprocesses, so two workers on two cores overlap
# the waits. TEST_WORKERS=0 runs it in this one process.
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -q -p no:cacheprovider $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS))

test: $(STAMP)
	$(PYTEST)
	$(MAKE) --no-print-directory docs

# Benchmarks are not tests: about 40 min on 2 cores; run them on a quiet machine.
# The bench extra (pfl-research) cannot be installed next to constraints.txt's set (see there).
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[bench]"
	$(BIN)/python benchmarks/throughput.py
	$(BIN)/python benchmarks/memory.py

clean:
	rm -rf runs .pytest_cache site

# The documentation site (docs/, mkdocs.yml) into site/. --strict: a broken link or anchor, or a
# page missing from the navigation, fails the build. The environment has the docs extra.
.PHONY: docs test-fast
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# The inner loop: everything but the tests marked slow (own Ray start-ups, real processes, long runs).
test-fast: $(STAMP)
	$(PYTEST) -m "not slow"
