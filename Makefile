# The README's two commands, `make demo` and `make test`: each sets up what it needs first.
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed-from-pyproject
# The integrators' Node tools (graphql-http's audit, codegen, relay-compiler...) that tests run.
NODE_TOOLS := tests/node
NODE_STAMP := $(NODE_TOOLS)/node_modules/.installed-from-lock

.PHONY: demo test lint schema postgres-binaries

demo: $(STAMP)
	$(VENV)/bin/partner-api demo

# The whole suite, each database test on SQLite and on a PostgreSQL server the tests start.
test: $(STAMP) postgres-binaries $(NODE_STAMP)
	$(VENV)/bin/pytest $(PYTEST_ARGS)

# ruff (pyproject.toml [tool.ruff]) over the code, tests, benchmarks and migrations; strict mypy on
# api/ and authz/ ([tool.mypy]). `.ci/run` runs it before the tests.
lint: $(STAMP)
	$(VENV)/bin/ruff check api authz tests bench migrations
	$(VENV)/bin/mypy

schema: $(STAMP)
	$(VENV)/bin/partner-api export-schema

# (Re)installed when missing or older than pyproject.toml.
$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

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
