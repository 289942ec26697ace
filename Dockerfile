# The saga orchestrator as a container image.
#
#   docker build -t saga-orchestrator .
#   docker run -p 8008:8008 -e DATABASE_URL=postgresql://... -e REDIS_URL=redis://... saga-orchestrator
#
# Settings come from the environment (docs/configuration.md). Without DATABASE_URL the store is
# the SQLite file in DATA_DIR, a volume. Linted by hadolint in tests/ops/test_container.py.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: install the project and its dependencies (no dev extras) into a virtualenv -------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /build
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir . \
    && find /opt/venv -name __pycache__ -type d -prune -exec rm -rf {} +

# --- runtime: the virtualenv, a non-root user, a data volume ---------------------------------
FROM ${PYTHON_IMAGE} AS runtime

# A fixed numeric id, so that Kubernetes' runAsNonRoot can check it.
RUN groupadd --system --gid 10001 saga \
    && useradd --system --uid 10001 --gid saga --home-dir /var/lib/saga-orchestrator \
        --shell /usr/sbin/nologin saga \
    && mkdir -p /var/lib/saga-orchestrator \
    && chown saga:saga /var/lib/saga-orchestrator

COPY --from=build /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOST=0.0.0.0 \
    PORT=8008 \
    DATA_DIR=/var/lib/saga-orchestrator

WORKDIR /var/lib/saga-orchestrator
VOLUME ["/var/lib/saga-orchestrator"]
USER 10001:10001
EXPOSE 8008

# Liveness: the run loop and the actors answer. No curl in a slim image: Python asks.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health/live' % os.environ.get('PORT', '8008'), timeout=4)"]

# SIGTERM (docker stop) shuts down in order: HTTP first, then the actors, then the store.
STOPSIGNAL SIGTERM
CMD ["saga-orchestrator", "serve"]
