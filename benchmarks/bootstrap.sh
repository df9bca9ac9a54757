#!/usr/bin/env bash
# Tools `make bench` needs beyond `make setup` (ADR 0046): wrk, the compiled HTTP load
# generator (Debian's package; its Lua script gives each request its own Idempotency-Key),
# and pgbench (the same-run baseline of the transfer benchmark; in Debian's Postgres
# package, which bootstrap.sh already installs). Idempotent: installs only what is missing.
set -euo pipefail
need=()
command -v wrk >/dev/null 2>&1 || need+=(wrk)
ls /usr/lib/postgresql/*/bin/pgbench >/dev/null 2>&1 || need+=(postgresql-contrib)
if ((${#need[@]})); then
  echo "[bench-bootstrap] installing ${need[*]}"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
