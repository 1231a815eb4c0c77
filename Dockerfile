# syntax=docker/dockerfile:1
# One image for every process; the command picks which one runs:
#   api (default)  python -m uvicorn app:create_app --factory --no-proxy-headers ...
#   consumer       python -m workers.consumer
#   worker         python -m workers.worker
#   migrations     python -m migrations
# Settings come from the environment at run time (see .env.example); none are baked in, and
# ENVIRONMENT=production makes the app refuse to start without a real JWT_SECRET.

# The base, pinned by digest (python:3.11-slim-bookworm: Python 3.11.16 on Debian 12): a
# rebuild gets the same bytes until someone moves the pin on purpose. The digest was taken from
# public Dockerfiles pinning that tag, not checked against the registry (none is reachable from
# where this was written); to check or move it, `docker buildx imagetools inspect
# python:3.11-slim-bookworm` and paste the index digest.
# `just docker-smoke` overrides PYTHON_BASE with a stand-in built from Debian's packages, as
# no image registry is reachable on the CI machine (README, "The image, run for real").
ARG PYTHON_BASE=python:3.11-slim-bookworm@sha256:a36c24f9cbdf4fd0f52d67f0823eeac19c2028c637cecc392d97f980d4fec56b

# --- builder: a virtualenv with the hash-locked runtime dependencies and the project --------
FROM ${PYTHON_BASE} AS builder

# Where pip finds packages, passed in at build time only when the build machine needs a
# package index of its own (nothing is baked into the image: these exist in this stage only).
ARG PIP_INDEX_URL
ARG PIP_TRUSTED_HOST

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /build
# Dependencies first, so that a code change does not reinstall them (layer cache).
# Every runtime dependency has a wheel for amd64 and arm64: no compiler is needed here.
COPY requirements/main.txt requirements/main.txt
RUN pip install --require-hashes --no-deps -r requirements/main.txt

COPY pyproject.toml app.py ./
COPY features/ features/
COPY shared/ shared/
COPY workers/ workers/
# The project itself; its dependencies are already there, hash-checked.
RUN pip install --no-deps .

# --- runtime: the virtualenv and the source, run as an unprivileged user --------------------
FROM ${PYTHON_BASE} AS runtime

LABEL org.opencontainers.image.title="order-service" \
      org.opencontainers.image.description="Order management REST service: api, consumer, worker and migrations in one image"

# /tmp/metrics: prometheus_client's multiprocess files, so /metrics adds up every API process.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin app \
    && install -d -o 10001 -g 10001 /tmp/metrics

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ENVIRONMENT=production \
    WEB_CONCURRENCY=2 \
    UVICORN_HOST=0.0.0.0 \
    UVICORN_PORT=8000 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/metrics

COPY --from=builder /opt/venv /opt/venv

# /app is the working directory, so `python -m` imports the code from here (it comes first on
# sys.path); alembic.ini is found next to migrations/ (migrations/admin.py).
# The files stay root-owned: the app user can read the code but not change it.
WORKDIR /app
COPY pyproject.toml alembic.ini app.py ./
COPY features/ features/
COPY shared/ shared/
COPY workers/ workers/
COPY migrations/ migrations/
RUN python -m compileall -q /app

USER 10001:10001

EXPOSE 8000

# Liveness of the API. The consumer, worker and migrate containers run the same image, so
# docker-compose.yml gives them their own check (or none for the one-shot migrate).
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ['UVICORN_PORT']}/health\", timeout=2)"]

# As `just api`; uvicorn reads the number of processes from WEB_CONCURRENCY (one per core),
# and its address from UVICORN_HOST and UVICORN_PORT (so a host-network run can move it);
# --no-proxy-headers: the app alone decides the client address, from TRUSTED_PROXIES.
CMD ["python", "-m", "uvicorn", "app:create_app", "--factory", "--no-access-log", "--no-proxy-headers"]
