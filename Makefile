# hastack: `make run` starts the whole single-host stack, `make test` runs every check.
# Both create .venv on first use. `make run` needs only the runtime dependencies; `make test`
# adds the test tools and installs the real peer daemons the differential and interop tests
# compare against (memcached, rsyslog, perlbal, ...; see .ci/apt-packages.txt).

VENV   ?= .venv
PY     := $(VENV)/bin/python
CONFIG ?= configs/single-host.toml
PYTEST_ARGS ?=
RUN_STAMP  := $(VENV)/.run-installed
TEST_STAMP := $(VENV)/.test-installed

.PHONY: run test lint typecheck unit peers bench clean status down

$(PY):
	@python3 -m venv $(VENV) || { rm -rf $(VENV); \
	  echo "python3 -m venv failed: on Debian/Ubuntu run 'apt-get install python3-venv'"; exit 1; }
	$(PY) -m pip install -q --upgrade pip

$(RUN_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[ha]'
	@touch $@

$(TEST_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[test,bench,ha]'
	@touch $@ $(RUN_STAMP)

run: $(RUN_STAMP)
	$(VENV)/bin/hastack up $(CONFIG)

status: $(RUN_STAMP)
	$(VENV)/bin/hastack status $(CONFIG)

down: $(RUN_STAMP)
	$(VENV)/bin/hastack down $(CONFIG)

peers:
	@.ci/install-peers

lint: $(TEST_STAMP)
	$(VENV)/bin/ruff check src tests benchmarks

typecheck: $(TEST_STAMP)
	$(VENV)/bin/mypy

test: peers $(TEST_STAMP) lint typecheck
	$(PY) -m pytest $(PYTEST_ARGS)

unit: $(TEST_STAMP)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

bench: peers $(TEST_STAMP)
	$(PY) -m benchmarks.run_all

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
