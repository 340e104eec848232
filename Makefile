# Two commands on a fresh machine: `make run` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Node tools for the Cloudflare side (wrangler; Miniflare + Pyodide for the adapters' contract tests),
# pinned exactly in package.json; no lockfile is kept.
NODE_STAMP := node_modules/.installed
# The benchmarks' peers (Scrapy, aiohttp + selectolax) in their own venv, pinned in benchmarks/requirements.txt.
BENCH_VENV  := benchmarks/.venv
BENCH_STAMP := $(BENCH_VENV)/.installed

.PHONY: run test lint typecheck check clean bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

$(NODE_STAMP): package.json
	npm install --no-audit --no-fund
	touch $(NODE_STAMP)

$(BENCH_STAMP): benchmarks/requirements.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet -r benchmarks/requirements.txt
	touch $(BENCH_STAMP)

## Start the whole service (API + consumer) on the embedded SQLite backend.
run: $(STAMP)
	$(BIN)/scrapeq dev

## Install what the tests need, then lint, type-check and run every test (what CI runs).
test: lint typecheck $(STAMP) $(NODE_STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

check: test

## Benchmarks against peers, side by side (benchmarks/README.md; knobs REPS, PAGES, ONLY). Installs Debian's
## nginx and wrk with apt-get if they are missing.
bench: $(STAMP) $(NODE_STAMP) $(BENCH_STAMP)
	@test -x /usr/sbin/nginx && command -v wrk >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx wrk)
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) $(BENCH_VENV) node_modules .pytest_cache .mypy_cache .ruff_cache
