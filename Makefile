# The README's two commands, `make demo` and `make test`: each sets up what it needs first.
# Python 3.12 (supported longest of the two oso has wheels for), found on PATH or in pyenv's versions; else
# 3.11 (Debian 12's python3), still supported and tested by .ci/run. `make PYTHON=...` chooses another.
PYTHON ?= $(or $(firstword $(foreach p,python3.12 $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12) \
  python3.11,$(shell $(p) -c 'print("$(p)")' 2>/dev/null))),python3)
VENV ?= .venv
STAMP := $(VENV)/.installed-from-lock
LOCK := requirements.lock
PIP := $(VENV)/bin/pip --quiet --disable-pip-version-check
# The integrators' Node tools (graphql-http's audit, codegen, relay-compiler...) that tests run.
NODE_TOOLS := tests/node
NODE_STAMP := $(NODE_TOOLS)/node_modules/.installed-from-lock

.PHONY: demo test lint lock conformance schema postgres-binaries

demo: $(STAMP)
	$(VENV)/bin/partner-api demo

# The whole suite, each database test on SQLite and on a PostgreSQL server the tests start.
test: $(STAMP) postgres-binaries $(NODE_STAMP)
	$(VENV)/bin/pytest $(PYTEST_ARGS)

# What a replacement of the oso engine must pass (docs/oso-runway.md, tests/engine_conformance.py).
conformance: $(STAMP) postgres-binaries
	$(VENV)/bin/pytest -m engine_conformance $(PYTEST_ARGS)

# ruff (pyproject.toml [tool.ruff]) over the code, tests, benchmarks and migrations; strict mypy on
# api/ and authz/ ([tool.mypy]). `.ci/run` runs it before the tests.
lint: $(STAMP)
	$(VENV)/bin/ruff check api authz tests bench migrations tools
	$(VENV)/bin/mypy

schema: $(STAMP)
	$(VENV)/bin/partner-api export-schema

# Every extra (demo, tracing, test) from the lock file, hashes checked, when missing or older than the lock or
# pyproject.toml; a lock older than pyproject.toml's requirements stops here (tools/lock.py --check).
$(STAMP): pyproject.toml $(LOCK) | $(VENV)/bin/python
	$(VENV)/bin/python tools/lock.py --check
	$(PIP) install --require-hashes -r $(LOCK)
	$(PIP) install --no-deps --no-build-isolation -e .
	touch $(STAMP)

$(VENV)/bin/python:
	@[ "$$($(PYTHON) -c 'import sys; print(sys.version_info >= (3, 12))')" = True ] || \
	  echo "make: $(VENV) on $(PYTHON), older than Python 3.12, the default (none on PATH or in ~/.pyenv/versions, or PYTHON=)" >&2
	$(PYTHON) -m venv $(VENV)

# Re-resolve requirements.lock from pyproject.toml (after adding or changing a dependency), with uv from the
# lock itself; commit both files.
lock: | $(VENV)/bin/python
	test -x $(VENV)/bin/uv || $(PIP) install 'uv>=0.13,<0.14'
	$(VENV)/bin/python tools/lock.py $(VENV)/bin/uv

# The tests start their own server from Debian's binaries, unless given one to use.
postgres-binaries:
	@[ -n "$$PARTNER_API_TEST_POSTGRES_URL" ] || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || { \
	  [ "$$(id -u)" = 0 ] || { echo "make test: PostgreSQL server binaries are missing: run as root, or apt-get install postgresql, or set PARTNER_API_TEST_POSTGRES_URL" >&2; exit 1; }; \
	  echo "make test: installing Debian's postgresql package"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null; }

# (Re)installed from the lock file when missing or older than it.
$(NODE_STAMP): $(NODE_TOOLS)/package-lock.json
	@command -v npm >/dev/null || { echo "make test: Node.js and npm are missing: apt-get install nodejs npm" >&2; exit 1; }
	cd $(NODE_TOOLS) && npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)
