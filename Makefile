# Clearway: two commands do everything on a fresh machine.
#   make run   - bring the platform up on the embedded stack (Kafka + Postgres + services)
#   make test  - install what is missing and run every test against real Kafka and Postgres
SHELL := /bin/bash
PY    := .venv/bin/python
STACK := .local/stack
AXE   := tests/e2e/axe/node_modules/axe-core/axe.min.js

.PHONY: run test up down status setup lint typecheck schemas-check config-doc test-unit test-integration bench chaos clean jaeger \
	container-images compose-up compose-down compose-test helm chart-check promtool rules-check

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
	@$(MAKE) -s chart-check

typecheck: setup
	.venv/bin/mypy shared/src/clearway/shared

# docs/configuration.md is generated from the settings classes; `make lint` checks it.
config-doc: setup
	.venv/bin/clearway-config write

schemas-check: setup
	.venv/bin/clearway-schemas check

# Jaeger (the Chromium trace test) and promtool (alert rules) are built from the Go
# module proxy once; later runs reuse .local/bin.
test: setup lint typecheck schemas-check rules-check jaeger
	.venv/bin/pytest -q -p no:cacheprovider

test-unit: setup
	.venv/bin/pytest -q tests/unit

test-integration: setup
	.venv/bin/pytest -q -m integration

# Every benchmark, then benchmarks/report/README.md with plots (docs/benchmarks.md, ADR 0046);
# benchmarks/bootstrap.sh installs wrk. ARGS=--full: the sizes of issue #17's figures.
bench: setup
	@bash benchmarks/bootstrap.sh
	$(PY) -m benchmarks.run $(ARGS)

# The whole platform under faults on a private stack (never .local/stack): 5,000 intents
# through a lossy proxy and over Kafka, SIGKILLs of every service, a 60 s Kafka outage, a
# Postgres immediate stop, failing receivers; then the invariants as a table, written to
# benchmarks/report/chaos.md; exit 1 on any violation (ADR 0047). `make test` runs it
# small (tests/e2e/test_chaos.py). CHAOS_ARGS="--intents 500" for another size.
chaos: setup
	$(PY) -m benchmarks.chaos --report benchmarks/report/chaos.md $(CHAOS_ARGS)

clean: down
	rm -rf .local

# Jaeger v2 built from the Go module proxy; it serves the Jaeger UI shipped in
# deploy/local/jaeger/ui (deploy/local/tracing.py). `make run` builds it in the
# background on first use, then starts it and points every service's OTLP exporter at it.
jaeger: .local/bin/jaeger

.local/bin/jaeger: deploy/local/jaeger/go.mod
	mkdir -p .local/bin
	cd deploy/local/jaeger && go build -o ../../../.local/bin/jaeger github.com/jaegertracing/jaeger/cmd/jaeger

# Containers without Docker or a registry (docs/running.md, ADR 0042): podman,
# images built here from a debootstrap base, docker-compose.yml run with
# podman-compose. Installs podman & co. with apt when missing. Not part of `make test`.
container-images:
	deploy/containers/podman.sh images

compose-up: setup
	deploy/containers/podman.sh up

compose-down:
	deploy/containers/podman.sh down

# The e2e flow (token -> transfer -> signed webhook -> audit search) against the
# compose stack: brings it up, runs deploy/containers/compose_e2e.py, leaves it up
# (make compose-down).
compose-test: compose-up
	CONTAINERS_CONF=$(CURDIR)/deploy/containers/containers.conf $(PY) deploy/containers/compose_e2e.py

# helm from the Go module proxy (no release binaries here), for the chart checks: a cold
# build takes minutes (15-23 min measured on a loaded 2-core machine), 26 s with Go's cache.
HELM_VERSION := v3.22.0
HELM := .local/bin/helm
# the oldest Kubernetes the chart is validated against (Chart.yaml kubeVersion allows 1.25+)
KUBE_VERSION := 1.29.0
helm: $(HELM)

$(HELM):
	mkdir -p .local/bin
	GOBIN=$(CURDIR)/.local/bin GOFLAGS=-mod=mod go install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)

# The chart: helm's strict lint, then every rendered object against the Kubernetes
# schemas (strict: unknown fields fail), with the default values and with every
# optional part on (the ServiceMonitor CRD has no schema there: the chart test checks
# it); tests/deploy/test_helm_chart.py checks what runs in each pod.
chart-check: setup $(HELM)
	$(HELM) lint --strict helm/clearway
	$(HELM) lint --strict helm/clearway -f helm/clearway/ci/everything-values.yaml
	set -o pipefail; $(HELM) template cw helm/clearway --kube-version $(KUBE_VERSION) \
		| .venv/bin/kubernetes-validate -k $(KUBE_VERSION) --strict --quiet --no-warn -
	set -o pipefail; $(HELM) template cw helm/clearway --kube-version $(KUBE_VERSION) \
		-f helm/clearway/ci/everything-values.yaml \
		| .venv/bin/kubernetes-validate -k $(KUBE_VERSION) --strict --quiet --no-warn -

# Prometheus' promtool (same module version as Jaeger's): checks deploy/prometheus/
# and evaluates the alerts in tests (clearway.shared.testing.alerts).
promtool: .local/bin/promtool

.local/bin/promtool: deploy/prometheus/promtool/go.mod
	mkdir -p .local/bin
	cd deploy/prometheus/promtool && go build -o ../../../.local/bin/promtool github.com/prometheus/prometheus/cmd/promtool

rules-check: promtool
	.local/bin/promtool check rules deploy/prometheus/alerts.yaml
