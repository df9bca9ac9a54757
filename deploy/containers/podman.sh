#!/usr/bin/env bash
# Containers without Docker: podman, images built offline, docker-compose.yml run
# with podman-compose (docs/running.md, docs/adr/0042-containers-built-offline.md).
#
#   deploy/containers/podman.sh setup     install podman, runc, debootstrap, podman-compose
#   deploy/containers/podman.sh base      localhost/debian-min:bookworm (debootstrap, no registry)
#   deploy/containers/podman.sh images    clearway, Kafka, Postgres and Jaeger images from that base
#   deploy/containers/podman.sh up|down   docker-compose.yml with these images
#   deploy/containers/podman.sh socket    podman's Docker-compatible API (testcontainers)
#
# Every step is idempotent: run again, it does only what is missing.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$ROOT/deploy/containers
STATE=$ROOT/.local/containers
export CONTAINERS_CONF=$HERE/containers.conf
BASE_IMAGE=localhost/debian-min:bookworm
export CLEARWAY_IMAGE=localhost/clearway:dev
export CLEARWAY_KAFKA_IMAGE=localhost/clearway-kafka:4.1.1
export CLEARWAY_POSTGRES_IMAGE=localhost/clearway-postgres:15
export CLEARWAY_JAEGER_IMAGE=localhost/clearway-jaeger:dev
PROJECT=clearway
SERVICES=(sandbox-rail vault transfer webhooks audit)

say() { echo "[containers] $*"; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

setup() {
  local missing=()
  for tool in podman runc debootstrap podman-compose; do
    command -v "$tool" >/dev/null || missing+=("$tool")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]} (apt)"
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
      podman runc debootstrap podman-compose netavark aardvark-dns
  fi
}

# The Debian mirror apt already uses (deb822 or one-line sources), else Debian's CDN.
mirror() {
  local uri
  uri=$(grep -hs -m1 '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' || true)
  [ -n "$uri" ] || uri=$(grep -hs -m1 '^deb .*debian' /etc/apt/sources.list | awk '{print $2}' || true)
  echo "${uri:-http://deb.debian.org/debian}"
}

has_image() { podman image exists "$1"; }

base() {
  setup
  has_image "$BASE_IMAGE" && return 0
  local root=$STATE/rootfs
  say "building $BASE_IMAGE with debootstrap from $(mirror)"
  as_root rm -rf "$root"
  as_root debootstrap --variant=minbase bookworm "$root" "$(mirror)" >"$STATE/debootstrap.log"
  as_root tar -C "$root" -c . | podman import - "$BASE_IMAGE" >/dev/null
  as_root rm -rf "$root"
}

# HTTPS from inside a build goes through the same proxy as the host's: lend the
# host's CA bundle to the build (a read-only volume, never a layer).
ca_args() {
  local bundle=${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}
  [ -f "$bundle" ] && echo "--volume $bundle:/run/host-ca.crt:ro --build-arg CA_BUNDLE=/run/host-ca.crt"
}

build() {  # build <tag> <context> [containerfile]
  local tag=$1 context=$2 file=${3:-$2/Dockerfile}
  say "building $tag"
  # shellcheck disable=SC2046 # the CA arguments are words
  podman build -q --format docker --network host --build-arg BASE="$BASE_IMAGE" \
    $(ca_args) -f "$file" -t "$tag" "$context" >/dev/null
}

images() {
  base
  mkdir -p "$STATE/kafka"
  build "$CLEARWAY_IMAGE" "$ROOT"
  build "$CLEARWAY_POSTGRES_IMAGE" "$HERE/postgres" "$HERE/postgres/Containerfile"
  # the Kafka jars: Maven Central through mvn (its ~/.m2 cache makes it quick again)
  mvn -q -f "$HERE/kafka/pom.xml" dependency:copy-dependencies -DincludeScope=runtime \
    -DoutputDirectory="$STATE/kafka/libs"
  cp "$HERE"/kafka/*.sh "$ROOT/deploy/local/kafka/log4j2.properties" "$STATE/kafka/"
  build "$CLEARWAY_KAFKA_IMAGE" "$STATE/kafka" "$HERE/kafka/Containerfile"
  jaeger_image
}

# Jaeger: the binary of `make jaeger` (Go module proxy), its config and the shipped UI.
jaeger_image() {
  if ! command -v go >/dev/null && [ ! -x "$ROOT/.local/bin/jaeger" ]; then
    say "no Go and no .local/bin/jaeger: compose runs without Jaeger (no traces)"
    return 0
  fi
  make -s -C "$ROOT" jaeger
  local ctx=$STATE/jaeger
  rm -rf "$ctx" && mkdir -p "$ctx/ui"
  cp "$ROOT/.local/bin/jaeger" "$ROOT/deploy/local/jaeger/config.yaml" "$ctx/"
  tar -xzf "$ROOT"/deploy/local/jaeger/ui/jaeger-ui-*.tgz -C "$ctx/ui" --strip-components=1 build
  cp "$ROOT/deploy/local/jaeger/ui/LICENSE" "$ROOT/deploy/local/jaeger/ui/NOTICE.md" "$ctx/ui/"
  build "$CLEARWAY_JAEGER_IMAGE" "$ctx" "$HERE/jaeger/Containerfile"
}

compose() { podman-compose -p "$PROJECT" -f "$ROOT/docker-compose.yml" "$@"; }

# Waits for a URL to answer 200 (a service's /readyz through its published port).
wait_url() {
  local url=$1 deadline=$((SECONDS + ${CLEARWAY_COMPOSE_TIMEOUT:-300}))
  until curl -fs -o /dev/null "$url"; do
    if [ $SECONDS -ge $deadline ]; then
      say "$url not ready after ${CLEARWAY_COMPOSE_TIMEOUT:-300}s (podman logs ${PROJECT}_<service>_1)"
      return 1
    fi
    sleep 2
  done
}

wait_healthy() {  # the image's own HEALTHCHECK, run by hand (no systemd timers here)
  local container=${PROJECT}_$1_1 deadline=$((SECONDS + ${CLEARWAY_COMPOSE_TIMEOUT:-300}))
  until podman healthcheck run "$container" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then say "$container not healthy"; return 1; fi
    sleep 2
  done
}

up() {
  images
  # The compose network made here rather than by podman-compose, so its gateway (the
  # containers' host.containers.internal) is known before the webhooks service starts:
  # the one private address its SSRF guard lets through, for make compose-test's receiver.
  podman network exists "${PROJECT}_default" || podman network create "${PROJECT}_default" >/dev/null
  local gateway
  gateway=$(podman network inspect "${PROJECT}_default" --format '{{range .Subnets}}{{.Gateway}}{{end}}')
  export CLEARWAY_WEBHOOKS_ALLOW_NETWORKS=$gateway/32
  # Without a Jaeger image (no Go here): no trace export (an empty endpoint is "unset").
  local infra=(postgres kafka)
  if has_image "$CLEARWAY_JAEGER_IMAGE"; then infra+=(jaeger); else export CLEARWAY_OTLP_ENDPOINT=""; fi
  say "starting docker-compose.yml (project $PROJECT)"
  # In dependency order, each stage healthy before the next: podman-compose 1.0
  # starts in order but does not wait for `condition: service_healthy`.
  compose up -d --no-build "${infra[@]}" >"$STATE/compose-up.log" 2>&1 \
    || { cat "$STATE/compose-up.log"; return 1; }
  wait_healthy postgres && wait_healthy kafka
  compose up -d --no-build consent >>"$STATE/compose-up.log" 2>&1
  wait_url http://127.0.0.1:8003/readyz
  compose up -d --no-build "${SERVICES[@]}" >>"$STATE/compose-up.log" 2>&1
  for port in 8005 8006 8001 8002 8004; do wait_url "http://127.0.0.1:$port/readyz"; done
  say "up: consent :8003, transfer :8001, webhooks :8002, audit :8004, rail :8005, vault :8006"
  has_image "$CLEARWAY_JAEGER_IMAGE" && say "Jaeger UI: http://127.0.0.1:16686/"
  return 0
}

down() {
  command -v podman-compose >/dev/null || return 0
  compose down -v >"$STATE/compose-down.log" 2>&1 || true
  say "down"
}

socket() {  # podman's Docker-compatible API on a unix socket (no systemd needed)
  setup
  local sock=$STATE/podman.sock
  if [ ! -S "$sock" ] || ! curl -fsS --unix-socket "$sock" http://d/_ping >/dev/null 2>&1; then
    rm -f "$sock"
    nohup podman system service --time=0 "unix://$sock" >"$STATE/podman-service.log" 2>&1 &
    echo $! >"$STATE/podman-service.pid"
    for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.1; done
  fi
  echo "export DOCKER_HOST=unix://$sock CONTAINERS_CONF=$CONTAINERS_CONF"
}

mkdir -p "$STATE"
case "${1:-}" in
  setup|base|images|up|down|socket) "$1" ;;
  *) sed -n '2,11p' "$0"; exit 2 ;;
esac
