# One image for every Clearway service; the command picks the service
# (`python -m clearway.<package>`). docs/running.md, docs/adr/0042-containers-built-offline.md.
#
# BASE: an image with Debian bookworm's apt; python3 is installed from Debian when
# the base has none. Default: the official Python image. Where no registry is
# reachable, deploy/containers/podman.sh builds `localhost/debian-min:bookworm`
# with debootstrap and passes it as BASE.
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}
ARG UV_VERSION=0.13.9
# A CA bundle mounted into the build (`--volume`) where HTTPS to PyPI passes a proxy
# with its own CA; empty: the image's own trust store. Never copied into the image.
ARG CA_BUNDLE=

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv

# SoftHSM2: the development key store (production points CLEARWAY_<SVC>_HSM_MODULE at
# its HSM's PKCS#11 module instead); python3 (and its headers) from Debian on a base
# without Python; a C compiler, OpenSSL's and libpq's headers for the audit's compiled
# verification loop and COPY reader (services/audit-native, ADR 0041, ADR 0050), built
# by `uv sync` (libpq-dev brings the libpq5 the service loads at run time).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates softhsm2 \
      gcc libc6-dev libssl-dev libpq-dev \
      $(command -v python3 >/dev/null || echo python3 python3-venv python3-dev) \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/uv \
 && { [ -z "$CA_BUNDLE" ] || export PIP_CERT="$CA_BUNDLE"; } \
 && /opt/uv/bin/pip install --no-cache-dir "uv==${UV_VERSION}" \
 && ln -s /opt/uv/bin/uv /usr/local/bin/uv \
 && groupadd --gid 10001 clearway \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /var/lib/clearway clearway \
 && install -d -o 10001 -g 10001 -m 0700 /var/lib/clearway

WORKDIR /app

# Dependency layer: only the lock and the workspace's project files, so a source
# change does not reinstall the third-party packages (tests/unit/test_containers.py
# checks that every workspace member is listed here).
COPY pyproject.toml uv.lock ./
COPY shared/pyproject.toml shared/
COPY clients/webhook-verify/pyproject.toml clients/webhook-verify/
COPY services/audit/pyproject.toml services/audit/
COPY services/audit-native/pyproject.toml services/audit-native/setup.py services/audit-native/
COPY services/consent/pyproject.toml services/consent/
COPY services/console/pyproject.toml services/console/
COPY services/sandbox-rail/pyproject.toml services/sandbox-rail/
COPY services/transfer/pyproject.toml services/transfer/
COPY services/vault/pyproject.toml services/vault/
COPY services/webhooks/pyproject.toml services/webhooks/
RUN { [ -z "$CA_BUNDLE" ] || export SSL_CERT_FILE="$CA_BUNDLE"; } && uv sync --frozen --no-dev --all-packages --no-install-workspace

COPY schemas schemas
COPY clients clients
COPY shared shared
COPY services services
RUN { [ -z "$CA_BUNDLE" ] || export SSL_CERT_FILE="$CA_BUNDLE"; } && uv sync --frozen --no-dev --all-packages

# Writable state of the development key store (SoftHSM2 tokens, keyring, demo
# clients) outside the read-only /app: a volume, so keys outlive the container
# (the audit service's checkpoint keys must, or old checkpoints become unverifiable).
ENV PATH=/app/.venv/bin:$PATH \
    CLEARWAY_SCHEMAS_DIR=/app/schemas \
    CLEARWAY_LOCAL_DIR=/var/lib/clearway
VOLUME /var/lib/clearway

# Numeric, so Kubernetes can check runAsNonRoot without resolving a name.
USER 10001:10001

# Liveness of whichever service runs (the one whose CLEARWAY_<SVC>_PORT is set).
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["clearway-healthcheck"]

CMD ["python", "-m", "clearway.transfer"]
