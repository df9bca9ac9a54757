# Clearway: two commands do everything on a fresh machine.
#   make run   - bring the platform up on the embedded stack (Kafka + Postgres + services)
#   make test  - install what is missing and run every test against real Kafka and Postgres
SHELL := /bin/bash
PY    := .venv/bin/python
STACK := .local/stack
AXE   := tests/e2e/axe/node_modules/axe-core/axe.min.js

.PHONY: run test up down status setup lint typecheck schemas-check config-doc test-unit test-integration bench clean jaeger

setup: .venv/.synced $(AXE)

# axe-core for the console's accessibility check, pinned by its lockfile
$(AXE): tests/e2e/axe/package-lock.json
	npm ci --prefix tests/e2e/axe --no-audit --no-fund --loglevel=error
	@touch $@

.venv/.synced: pyproject.toml shared/pyproject.toml $(wildcard services/*/pyproject.toml)
	@bash deploy/local/bootstrap.sh
	@touch $@

run: up
	@$(PY) deploy/local/platform.py show

up: setup
	@$(PY) deploy/local/platform.py up

down:
	@[ -x $(PY) ] && $(PY) deploy/local/platform.py down || true

status:
	@$(PY) deploy/local/platform.py status

lint: setup
	.venv/bin/ruff check .
	.venv/bin/lint-imports
	.venv/bin/clearway-config check
	.venv/bin/clearway-versions check
	$(PY) deploy/ci/check_doc_refs.py

typecheck: setup
	.venv/bin/mypy shared/src/clearway/shared

# docs/configuration.md is generated from the settings classes; `make lint` checks it.
config-doc: setup
	.venv/bin/clearway-config write

schemas-check: setup
	.venv/bin/clearway-schemas check

test: setup lint typecheck schemas-check
	.venv/bin/pytest -q -p no:cacheprovider

test-unit: setup
	.venv/bin/pytest -q tests/unit

test-integration: setup
	.venv/bin/pytest -q -m integration

bench: setup
	$(PY) benchmarks/run.py

clean: down
	rm -rf .local

# Optional: Jaeger v2 built from the Go module proxy (query API, no web UI);
# `make run` starts it when present and points every service's OTLP exporter at it.
jaeger: .local/bin/jaeger

.local/bin/jaeger: deploy/local/jaeger/go.mod
	mkdir -p .local/bin
	cd deploy/local/jaeger && go build -o ../../../.local/bin/jaeger github.com/jaegertracing/jaeger/cmd/jaeger
