# Two commands on a fresh machine: `make run` (the whole local stack) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-fast bench artifacts bench-coldstart clean-venv dashboard docs

$(STAMP): requirements.txt requirements-dev.txt constraints.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required (set PYTHON=python3.11)")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip<26.3"  # chalice 1.34 needs pip < 26.3
	$(BIN)/python -m pip install -q -r requirements-dev.txt -c constraints.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(STAMP)

## Start moto (AWS), bootstrap, the HTTP API on :8000 and the Kinesis runner; Ctrl-C stops all.
run: $(STAMP) dashboard
	$(BIN)/eventpipe run

## The dashboard's front-end libraries from npm (web/package-lock.json) into chalicelib/dashboard/static/vendor/
## (skipped when up to date; the test and artifact builds run it too).
dashboard:
	bash scripts/build-dashboard.sh

## The whole test suite (also against a real OpenSearch node when Java is available).
test: $(STAMP)
	bash scripts/test.sh

## Every unit test (no servers), the import-linter contracts included.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/unit

## The docs site: docs/ -> site/ (MkDocs + Material, --strict), the HTTP API and CLI reference pages generated
## from the code, every internal link and anchor checked (external ones listed in site/external-links.txt).
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

bench: $(STAMP)
	$(BIN)/python bench/ingest.py

## The Lambda code zip and layers for the target runtime (build/artifacts), with their sizes.
artifacts: $(STAMP) dashboard
	$(BIN)/python -m eventpipe.deploy.artifacts build --out build/artifacts

bench-coldstart: $(STAMP)
	$(BIN)/python bench/coldstart.py

clean-venv:
	rm -rf $(VENV)
