# hastack: `make run` starts the whole single-host stack, `make test` runs every check.
# Both create .venv on first use; `make test` also installs the real peer daemons the
# differential and interop tests compare against (memcached, rsyslog, perlbal, ...).

VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
CONFIG ?= configs/single-host.toml
PYTEST_ARGS ?=

.PHONY: run test lint typecheck unit peers bench venv clean status down

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,bench,ha]'
	@touch $(STAMP)

venv: $(STAMP)

run: venv
	$(VENV)/bin/hastack up $(CONFIG)

status: venv
	$(VENV)/bin/hastack status $(CONFIG)

down: venv
	$(VENV)/bin/hastack down $(CONFIG)

peers:
	@.ci/install-peers

lint: venv
	$(VENV)/bin/ruff check src tests benchmarks

typecheck: venv
	$(VENV)/bin/mypy

test: venv peers lint typecheck
	$(PY) -m pytest $(PYTEST_ARGS)

unit: venv
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

bench: venv peers
	$(PY) -m benchmarks.run_all

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
