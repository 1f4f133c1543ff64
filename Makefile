# batchgate: the project's vocabulary. `make` lists the targets.
# Works from a fresh clone on Debian: `install` creates .venv and apt-installs what is missing.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Re-installed whenever the package metadata changes.
STAMP := $(VENV)/.batchgate-installed
CODE := api workers batching baseline batchgate stack loadtest clients/python/batchgate_client
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_INSTALL := $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends

.DEFAULT_GOAL := help
.PHONY: base-images images compose-test chaos constraints help install system-deps test-deps dashboard run test lint format docs migrate apikey warm-cache budget usage loadtest bench scaletest quotatest baseline up down clean

help: ## list the targets
	@echo "batchgate: make <target>"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## /  \1\t/' | expand -t 16

install: system-deps $(STAMP) ## create .venv, install the package (editable, dev extras) and the Python client, redis-server and nginx

system-deps: ## apt-get install redis-server, nginx and openssl if missing
	@missing=""; \
	command -v redis-server >/dev/null || [ -x /usr/bin/redis-server ] || missing="$$missing redis-server"; \
	command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing="$$missing nginx"; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
	if [ -n "$$missing" ]; then echo "installing$$missing with apt-get"; $(APT_INSTALL) $$missing; fi

$(BIN)/python:
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { echo "installing python3-venv with apt-get"; $(APT_INSTALL) python3-venv; }
	$(PYTHON) -m venv $(VENV)

# Installed with the versions pinned in constraints.txt, so two installs a month apart agree.
$(STAMP): setup.cfg pyproject.toml constraints.txt clients/python/pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --disable-pip-version-check -q -c constraints.txt -e '.[dev]' -e clients/python
	@touch $@

constraints: ## refresh constraints.txt: newest versions setup.cfg allows, in a throwaway venv
	rm -rf .venv-constraints && $(PYTHON) -m venv .venv-constraints
	.venv-constraints/bin/python -m pip install --disable-pip-version-check -q '.[dev]'
	.venv-constraints/bin/python -m pip freeze --exclude-editable | grep -v '^batchgate[= @]' > constraints.txt
	rm -rf .venv-constraints

# The dashboard's bundle (api/dashboard/dist) is checked in, so nothing else needs Node; after
# changing api/dashboard/src, build.mjs or the npm packages, rebuild it here and commit it
# (tests/api/test_dashboard_bundle.py fails while it is stale).
DASHBOARD := api/dashboard
dashboard: ## rebuild the checked-in dashboard bundle (api/dashboard/dist) with Node; apt-installs nodejs and npm if missing
	@command -v npm >/dev/null || { echo "installing nodejs npm with apt-get"; $(APT_INSTALL) nodejs npm; }
	cd $(DASHBOARD) && npm ci --no-audit --no-fund --ignore-scripts && npm run build

run: install ## run the whole stack in the foreground (nginx: HTTP :8080, HTTPS :8443); Ctrl-C stops it
	$(BIN)/python -m stack.cluster run

test-deps: ## apt-get install what only the tests use (Chromium, curl, Debian's docker-compose) if missing
	@missing=""; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	command -v curl >/dev/null || missing="$$missing curl"; \
	[ -x /usr/bin/docker-compose ] || missing="$$missing docker-compose"; \
	if [ -n "$$missing" ]; then echo "installing$$missing with apt-get"; $(APT_INSTALL) $$missing; fi

TEST_WORKERS ?= 2
# The preference tests need a PostgreSQL server: BATCHGATE_TEST_DATABASE_URL, else the machine's
# own, installed and started by tests/postgres.sh when missing.
test: install test-deps ## run the test suite (TEST_WORKERS=2 processes, a test file each at a time; 0 = one process)
	@url="$${BATCHGATE_TEST_DATABASE_URL:-}"; [ -n "$$url" ] || url="$$(bash tests/postgres.sh)" || exit 1; \
	echo "PostgreSQL for the preference tests is ready"; \
	BATCHGATE_TEST_DATABASE_URL="$$url" $(BIN)/pytest $(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile)

lint: install ## ruff (lint and format check) and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy $(CODE)

format: install ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

migrate: system-deps $(STAMP) ## apply the preferences database's migrations (DATABASE_URL; unset: SQLite in the run folder)
	$(BIN)/python -m api.database_cli migrate

apikey: system-deps $(STAMP) ## print a new API key of TIER (free, basic, premium; default free) in TENANT (default: its own)
	@$(BIN)/python -m stack.apikeys_cli create --tier $(or $(TIER),free) $(if $(TENANT),--tenant "$(TENANT)")

warm-cache: system-deps $(STAMP) ## pre-compute FILE (JSON/JSONL of requests) into TENANT's response cache at RATE/s (default 5)
	@test -n "$(FILE)" -a -n "$(TENANT)" || { echo "usage: make warm-cache FILE=queries.jsonl TENANT=name [RATE=5]"; exit 2; }
	$(BIN)/python -m workers.warm_cli "$(FILE)" --tenant "$(TENANT)" --rate $(or $(RATE),5)

budget: system-deps $(STAMP) ## set TENANT's monthly budget: TOKENS=<n> and/or USD=<amount> (KEY=<key hash>: one key's own; neither: removes it)
	@test -n "$(TENANT)" || { echo "usage: make budget TENANT=name TOKENS=20000 [USD=5] [KEY=hash]"; exit 2; }
	@$(BIN)/python -m api.budget_cli budget --tenant "$(TENANT)" $(if $(TOKENS),--tokens $(TOKENS)) $(if $(USD),--usd $(USD)) $(if $(KEY),--key "$(KEY)")

usage: system-deps $(STAMP) ## every tenant's usage and cost this month (UTC) with its budgets, one JSON line each (the operator's view)
	@$(BIN)/python -m api.budget_cli usage

loadtest: install ## stepped Locust load test (LOADTEST_* settings, or ARGS="--steps 10,20 --think-s 1"); writes loadtest/reports/<timestamp>/
	$(BIN)/python -m loadtest.run $(ARGS)

bench: install ## benchmark batching on/off, efficiency, overhead, CPU, 1 vs 8 tenants (~5 min; BENCH_* settings); JSON to loadtest/reports/
	$(BIN)/python -m loadtest.bench

baseline: install ## capture a PerformanceBaseline under steady healthy load and activate it (ARGS="--from-live --seconds 300" for live metrics)
	$(BIN)/python -m loadtest.baseline_cli $(ARGS)

scaletest: install ## 1 vs 3 API replicas and 1 vs 2 worker processes at the same load (~2 min; SCALETEST_* settings)
	$(BIN)/python -m loadtest.scaletest

quotatest: install ## 2 worker processes share one RPM quota, then one is killed (~5 min; QUOTATEST_* settings)
	$(BIN)/python -m loadtest.quotatest

chaos: install ## fault run on the shipped defaults: workers, an API replica and Redis (down 10 s) fail under load, with same-key clients and blocked prompts (CHAOS_N=2000, CHAOS_RATE=40)
	$(BIN)/python -m stack.chaos

# Docker: `apt-get install -y docker.io docker-compose debootstrap`, then `dockerd &` (docs/deployment.md).
base-images: $(STAMP) ## build stand-ins for the python/redis/postgres base images from Debian packages (no registry needed); recorded in .env
	$(BIN)/python -m stack.compose_cli base-images

images: $(STAMP) ## build the app, nginx and load-test images with BuildKit (pip's CA and index as build secrets)
	$(BIN)/python -m stack.compose_cli images

up: $(STAMP) ## the compose stack, detached: secrets, certificates and images if missing; prints its URL, a premium key and Flower's login
	$(BIN)/python -m stack.compose_cli up

down: $(STAMP) ## stop and remove the compose stack's containers (volumes are kept; V=1 removes them too)
	$(BIN)/python -m stack.compose_cli down $(if $(V),--volumes)

compose-test: $(STAMP) ## from a clean state: build, up, 200 tasks over HTTPS, scale workers to 3, kill containers under load, down -v
	$(BIN)/python -m stack.compose_test

docs: install ## refresh the settings table in docs/settings.md from the settings classes
	$(BIN)/python -m stack.settings_doc docs/settings.md

clean: ## remove the run folder, caches and build output (keeps .venv)
	rm -rf .run .pytest_cache .mypy_cache .ruff_cache build dist
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
