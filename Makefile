# AI Lab — every command a developer or CI needs. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help
export PATH := $(HOME)/.local/bin:$(PATH)
UV ?= uv
PYTHON_DEPS_STAMP := .venv/.synced

.PHONY: help up down test test-unit install infra-up infra-down infra-status bench \
        contracts lint rebuild-projections

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-20s %s\n", $$1, $$2}'

install: ## install uv (if missing) and every Python package of the workspace
	@command -v $(UV) >/dev/null 2>&1 || { echo "[install] uv not found; installing with pip"; \
	  python3 -m pip install --quiet --user uv==0.13.8 || python3 -m pip install --quiet uv==0.13.8; }
	@echo "[install] syncing the Python workspace (uv sync --all-packages)..."
	@$(UV) sync --all-packages --frozen
	@touch $(PYTHON_DEPS_STAMP)

infra-up: ## install (once, cached) and start Kafka, FerretDB (+PostgreSQL) and stripe-mock on loopback
	@bash scripts/infra/up.sh

infra-down: ## stop the infrastructure (data kept in .data/; `bash scripts/infra/down.sh --purge` wipes it)
	@bash scripts/infra/down.sh

infra-status: ## show whether each infrastructure component runs and answers
	@bash scripts/infra/status.sh

up: install infra-up ## set up and run the whole system; prints the gateway URL and a demo login; Ctrl-C stops
	@$(UV) run --frozen python scripts/system.py up $(if $(DETACH),--detach,)

down: ## stop services started with `make up DETACH=1`, then the infrastructure
	@$(UV) run --frozen python scripts/system.py down || true
	@bash scripts/infra/down.sh

contracts: ## write JSON Schemas of every event version and the AsyncAPI document
	@$(UV) run --frozen python -m ailab_contracts export-schemas libs/contracts/schemas

lint: ## ruff, and import-linter's architecture contracts (pyproject.toml)
	@$(UV) run --frozen ruff check libs services tests scripts bench
	@$(UV) run --frozen lint-imports

rebuild-projections: ## replay each service's event store into fresh read models
	@for pkg in gateway agent_registry billing usage_meter run_executor; do $(UV) run --frozen python -m $$pkg rebuild-projections; done

bench: install ## benchmarks (starts the infrastructure if needed); results in bench/results/*.json
	@started=0; if ! bash scripts/infra/status.sh >/dev/null 2>&1; then AILAB_PG_FAST=1 bash scripts/infra/up.sh || exit 1; started=1; fi; \
	set -a; source .data/infra.env; set +a; \
	$(UV) run --frozen python bench/run_executor_bench.py && $(UV) run --frozen python bench/usage_meter_bench.py; rc=$$?; \
	if [ $$started = 1 ]; then bash scripts/infra/down.sh; fi; exit $$rc

test-unit: install ## unit tests only (no infrastructure)
	@$(UV) run --frozen pytest -m unit -q

# make test: installs, starts the infrastructure (if it was not running), runs unit, integration and
# e2e tests, and stops what it started. USAGE_FAULT_KAFKA_RESTART=1: the usage-meter's fault test
# restarts this stack's Kafka broker under load (before the e2e tests start their system).
test: install ## set up everything and run all tests (unit, integration, e2e)
	@set -o pipefail; started=0; \
	if ! bash scripts/infra/status.sh >/dev/null 2>&1; then \
	  AILAB_PG_FAST=1 bash scripts/infra/up.sh || exit 1; started=1; \
	else echo "[test] infrastructure already running; using it"; fi; \
	set -a; source .data/infra.env; set +a; \
	AILAB_DATA_DIR=$(CURDIR)/.data AILAB_PG_FAST=1 USAGE_FAULT_KAFKA_RESTART=1 \
	  $(UV) run --frozen pytest -q -p no:cacheprovider libs services tests; rc=$$?; \
	if [ $$started = 1 ]; then bash scripts/infra/down.sh; fi; \
	exit $$rc
