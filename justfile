# The project's menu: `just --list` shows every routine task.
set dotenv-load := false

venv := ".venv"
py := venv / "bin/python"
export PYTHONUNBUFFERED := "1"

# List the recipes
default:
    @just --list --unsorted

# Create .venv and install the locked dependencies (hash-checked) plus this project
setup:
    test -x {{py}} || uv venv -q --python 3.11 {{venv}}
    uv pip sync -q --python {{py}} --require-hashes requirements/dev.txt
    uv pip install -q --python {{py}} --no-deps -e .

# Re-lock requirements/*.txt from pyproject.toml (hashes, no index addresses)
lock:
    uv pip compile -q pyproject.toml --generate-hashes --python-version 3.11 -o requirements/main.txt
    uv pip compile -q pyproject.toml --extra dev --generate-hashes --python-version 3.11 -o requirements/dev.txt

# Create the database if missing and apply every migration
migrate: setup
    {{py}} -m migrations

# Run api, consumer and worker together against local services, as development (Ctrl-C stops all three)
dev:
    #!/usr/bin/env bash
    set -euo pipefail
    export ENVIRONMENT="${ENVIRONMENT:-development}"
    just migrate
    trap 'kill -TERM $(jobs -p) 2>/dev/null; wait' EXIT INT TERM
    # --no-proxy-headers: the app decides the client address itself (TRUSTED_PROXIES)
    {{py}} -m uvicorn app:create_app --factory --host 127.0.0.1 --port 8000 --no-proxy-headers &
    {{py}} -m workers.consumer &
    {{py}} -m workers.worker &
    echo "API on http://127.0.0.1:8000  (Swagger: /schema/swagger)"
    wait -n

# Run the API alone in the foreground (one process per core; /metrics adds them all up)
api: setup
    #!/usr/bin/env bash
    set -euo pipefail
    export PROMETHEUS_MULTIPROC_DIR=$(mktemp -d)
    trap 'rm -rf "$PROMETHEUS_MULTIPROC_DIR"' EXIT
    {{py}} -m uvicorn app:create_app --factory --host 0.0.0.0 --port 8000 --workers $(nproc) --no-access-log --no-proxy-headers

# Run the RabbitMQ -> arq consumer in the foreground
consumer: setup
    {{py}} -m workers.consumer

# Run the arq worker in the foreground
worker: setup
    {{py}} -m workers.worker

# Show queued, running and failed jobs and the outbox backlog (read-only)
jobs: setup
    {{py}} -m workers.queue_status

# The reconciler's query plan on 200,000 orders, in a scratch database it drops (RELIABILITY.md)
explain-reconcile: setup
    {{py}} scripts/explain_reconcile.py

# Run the tests against local PostgreSQL, Redis and RabbitMQ (isolated per run)
test *args: setup
    {{py}} -m pytest {{args}}

# Lint and type-check
lint: setup
    {{py}} -m ruff check .
    {{py}} -m ruff format --check .
    {{py}} -m mypy .

# Format the code
fmt: setup
    {{py}} -m ruff format .
    {{py}} -m ruff check --fix .

# Write .env: .env.example with a random value for every secret (keeps an existing .env; --force replaces it)
dotenv *args: setup
    {{py}} scripts/dotenv.py {{args}}

# Start the whole stack in Docker (production settings; secrets from .env: `just dotenv`) and wait until the API is ready
up:
    docker compose up -d --build --wait
    @echo "API on http://localhost:8000  (Swagger: /schema/swagger)"

# Stop the Docker stack (volumes are kept; `docker compose down -v` drops them)
down:
    docker compose down

# Check the Docker artefacts without an engine: compose schema and rules, hadolint, .env.example
check-docker: setup
    {{py}} scripts/check_docker.py

# Build the image and run it for real here: migrations, api, consumer, worker and a smoke test against local services (root; README)
docker-check: setup
    {{py}} scripts/docker_check.py

# Benchmark api, consumer and worker on loopback against a bare-ASGI ceiling (~3 min, own data; see BENCHMARKS.md)
bench *args: setup _wrk
    {{py}} bench/run.py {{args}}

# The benchmark as a CI smoke run (~1 min): 2 s per scenario; fails on errors, not on targets
bench-smoke: setup _wrk
    {{py}} bench/run.py --smoke

# Install wrk (Debian's package) if it is missing
[private]
_wrk:
    @command -v wrk >/dev/null || { $(command -v sudo || true) apt-get update -qq && $(command -v sudo || true) apt-get install -y -qq wrk; }

# Audit the locked requirements for known vulnerabilities (says loudly what it could not check)
audit: setup
    {{py}} scripts/audit.py requirements/main.txt

# Chaos run (~N+1 min, not in `just test`): load + kill -9 + link cuts/stalls, then checks (see RELIABILITY.md)
chaos *args: setup
    {{py}} -m chaos {{args}}
