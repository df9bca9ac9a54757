#!/usr/bin/env bash
# Installs what a fresh machine lacks, then the Python workspace.
# System: Postgres server binaries, a JDK and Maven (for the Kafka jars), SoftHSM2.
set -euo pipefail
cd "$(dirname "$0")/../.."

need=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql postgresql-contrib)
command -v java >/dev/null 2>&1 || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || need+=(maven)
# Browser tests (the consent page, the Jaeger UI) drive Debian's Chromium through Playwright.
[ -x /usr/bin/chromium ] || need+=(chromium)
# The console's accessibility test runs axe-core: `make setup` installs it with npm ci
# (pinned by tests/e2e/axe's lockfile; no browser download: Debian's Chromium).
command -v npm >/dev/null 2>&1 || need+=(npm)
# KEKs live in a PKCS#11 token; tests and `make run` use SoftHSM2 (docs/design.md §9).
[ -e /usr/lib/softhsm/libsofthsm2.so ] || need+=(softhsm2)
# The audit's compiled verification loop (services/audit-native, ADR 0041) is built by
# `uv sync`: a C compiler, OpenSSL's headers and libpq's (its COPY reader, ADR 0050).
command -v cc >/dev/null 2>&1 || need+=(gcc libc6-dev)
[ -e /usr/include/openssl/evp.h ] || need+=(libssl-dev)
[ -e /usr/include/postgresql/libpq-fe.h ] || need+=(libpq-dev)
if ((${#need[@]})); then
  echo "[bootstrap] installing ${need[*]}"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

# Jaeger (traces, its web UI test) and promtool (alert rules) are built with Go >= 1.21,
# which fetches the toolchain pinned in their go.mod from the Go module proxy.
command -v go >/dev/null 2>&1 ||
  echo "[bootstrap] Go not found: make jaeger / make promtool (and so make test) need it (https://go.dev/dl)"

if ! command -v uv >/dev/null 2>&1; then
  echo "[bootstrap] installing uv"
  python3 -m pip install -q --disable-pip-version-check uv
fi
UV=$(command -v uv || echo "python3 -m uv")
$UV sync -q --all-packages
# Kafka jars from Maven Central (cached in ~/.m2 across runs).
.venv/bin/python deploy/local/localstack.py libs
echo "[bootstrap] ready"
