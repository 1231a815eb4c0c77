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
    {{py}} -m tools.explain_reconcile

# The plans of the order list's query, every shape (paging styles, filters), on 200,000 orders
explain-orders: setup
    {{py}} -m tools.explain_orders

# Rewrite openapi.json, the committed OpenAPI document, from the app (after a route or schema changed)
openapi: setup
    {{py}} -m tools.openapi write

# Generate a Python client (openapi-python-client, offline) into client/ (git-ignored), or into FOLDER
client *folder: setup
    {{py}} -m tools.openapi client {{folder}}

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
    {{py}} -m tools.dotenv {{args}}

# Start the whole stack in Docker (production settings; secrets from .env: `just dotenv`) and wait until the API is ready
up:
    docker compose up -d --build --wait
    @echo "API on http://localhost:8000  (Swagger: /schema/swagger)"

# Stop the Docker stack (volumes are kept; `docker compose down -v` drops them)
down:
    docker compose down

# Check the Docker artefacts without an engine: the compose spec and our schema, `docker compose config` with `just dotenv`'s values, hadolint, tools/docker/policy.py
docker-lint: setup
    #!/usr/bin/env bash
    set -euo pipefail
    bin={{venv}}/bin
    $bin/check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml
    $bin/check-jsonschema --schemafile tools/docker/compose.schema.json docker-compose.yml
    env_file=$(mktemp)
    trap 'rm -f "$env_file"' EXIT
    {{py}} -m tools.dotenv --force --output "$env_file" >/dev/null
    $bin/docker-compose --env-file "$env_file" config --quiet && echo "docker compose config: ok"
    $bin/hadolint Dockerfile && echo "hadolint: ok"
    {{py}} -m tools.docker.policy

# Build the image and run it here with `docker compose` on local services, the order pipeline's test against it, then `down -v` (root; README)
docker-smoke: setup _docker-engine _docker-base
    {{py}} -m tools.docker.smoke

# Start a Docker engine (Debian's docker.io) unless one answers
[private]
_docker-engine:
    #!/usr/bin/env bash
    set -euo pipefail
    docker info >/dev/null 2>&1 && exit 0
    command -v dockerd >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io; }
    echo "starting dockerd --iptables=false (log: /var/log/dockerd.log); it keeps running"
    setsid dockerd --iptables=false >>/var/log/dockerd.log 2>&1 </dev/null &
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && exit 0; sleep 1; done
    echo "dockerd did not answer within 60 s: see /var/log/dockerd.log" >&2
    exit 1

# Make python:3.11-slim-bookworm's stand-in once, from Debian's packages (no image registry is reachable here)
[private]
_docker-base:
    #!/usr/bin/env bash
    set -euo pipefail
    base=order-service-standin-base:python3.11-bookworm
    docker image inspect "$base" >/dev/null 2>&1 && exit 0
    command -v debootstrap >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap; }
    work=$(mktemp -d)
    unmount() { grep -o " $work/[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount --lazy || true; }
    trap 'unmount; rm -rf --one-file-system "$work"' EXIT
    # Either file may be missing (a deb822-only machine has no sources.list): read what exists.
    mirror=$({ cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null || true; } \
        | grep -oP '^(URIs:|deb)\s+\K\S+' | grep -v security | head -n1 || true)
    [ -n "$mirror" ] || { echo "no Debian mirror found in /etc/apt/sources.list(.d)" >&2; exit 1; }
    echo "base: debootstrap --variant=minbase bookworm with python3.11 from $mirror (a few minutes)"
    # python3.11-venv needs python3.11-distutils, which only python3-distutils provides.
    debootstrap --variant=minbase --include=python3.11,python3.11-venv,python3-distutils,ca-certificates bookworm "$work/fs" "$mirror" >/dev/null
    unmount
    ln -s /usr/bin/python3.11 "$work/fs/usr/local/bin/python"
    ln -s /usr/bin/python3.11 "$work/fs/usr/local/bin/python3"
    # pip inside the build trusts what this machine trusts to reach the package index.
    cp /etc/ssl/certs/ca-certificates.crt "$work/fs/etc/ssl/certs/ca-certificates.crt"
    rm -f "$work"/fs/var/cache/apt/archives/*.deb "$work"/fs/var/lib/apt/lists/*_*
    tar -C "$work/fs" --exclude='./proc/*' --exclude='./sys/*' -c . | docker import \
        --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
        --change 'CMD ["python3"]' --message "stand-in for python:3.11-slim-bookworm (just _docker-base)" - "$base"

# Benchmark api, consumer and worker on loopback against a bare-ASGI ceiling (~3 min, own data; see BENCHMARKS.md); marks missed targets, fails on errors (--strict: on misses too)
bench *args: setup _wrk
    {{py}} -m tools.bench.run {{args}}

# Open event streams on one API process (~2 min): memory per stream, idle CPU, delivery delay
bench-sse *args: setup
    {{py}} -m tools.bench.sse {{args}}

# The benchmark as a CI smoke run (~1 min): 2 s per scenario; fails on errors, not on targets
bench-smoke: setup _wrk
    {{py}} -m tools.bench.run --smoke

# Install wrk (Debian's package) if it is missing
[private]
_wrk:
    @command -v wrk >/dev/null || { $(command -v sudo || true) apt-get update -qq && $(command -v sudo || true) apt-get install -y -qq wrk; }

# Audit the locked requirements for known vulnerabilities (says loudly what it could not check)
audit: setup
    {{py}} -m tools.audit requirements/main.txt

# Chaos run (~N+1 min, not in `just test`): load + kill -9 + link cuts/stalls, then checks (see RELIABILITY.md)
chaos *args: setup
    {{py}} -m tools.chaos {{args}}
