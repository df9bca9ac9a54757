# One image for every Clearway service; the command picks the service.
FROM python:3.11-slim
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1
RUN pip install --no-cache-dir uv
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
