# The two commands of the README: `make demo` and `make test`. Each sets up what it needs.
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed-from-pyproject

.PHONY: demo test schema postgres-binaries clean

demo: $(STAMP)
	$(VENV)/bin/partner-api demo

test: $(STAMP) postgres-binaries
	$(VENV)/bin/pytest

schema: $(STAMP)
	$(VENV)/bin/partner-api export-schema

# Re-installed whenever pyproject.toml changes.
$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $(STAMP)

# The tests start their own PostgreSQL server; they need its binaries (Debian's package).
postgres-binaries:
	@ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	  else \
	    echo "PostgreSQL server binaries are missing: apt-get install postgresql (as root)" >&2; exit 1; \
	  fi; }

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
