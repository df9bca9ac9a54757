# One image for every Clearway service; the command picks the service.
FROM python:3.11-slim
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1
RUN pip install --no-cache-dir uv
# The audit's compiled verification loop (services/audit-native, ADR 0041) is built by
# `uv sync`: a C compiler and OpenSSL's headers (libcrypto itself is in the base image).
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends gcc libc6-dev libssl-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml uv.lock ./
COPY shared shared
COPY services services
COPY clients clients
COPY schemas schemas
RUN uv sync --frozen --no-dev --all-packages
ENV PATH=/app/.venv/bin:$PATH CLEARWAY_SCHEMAS_DIR=/app/schemas
USER nobody
CMD ["python", "-m", "clearway.transfer"]
