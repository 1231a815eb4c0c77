"""The one settings object: read once from the environment and `.env`, then passed around.

No other module reads ``os.environ``; the app factory and the workers take a ``Settings``,
so tests build theirs with their own database, Redis prefix and queue names.

Signing material (JWT_SECRET, JWT_PRIVATE_KEY) is checked by ``require_signing_keys``, which
only the API calls: the consumer, the worker, the migrations and queue_status start without
it, so a process with no business signing tokens is never handed a key that forges them.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from shared.accounts.signing_keys import (
    Algorithm,
    generate_private_key_pem,
    pem_text,
    pem_texts,
    signing_keys,
)

MIN_SECRET_BYTES = 32  # HS256 wants a key at least as long as its output
# SHA-256 of signing secrets that were once published (an old development default shipped in
# code and in .env.example): refused everywhere, without keeping the value itself around.
_PUBLISHED_SECRETS = frozenset({"056ef6a2f899f9b2e740dc023c5887d76651cf1c400821280b56705483a49b18"})

# A name or URL (an issuer, an audience): not empty, no spaces. Checked by load_settings.
_ONE_WORD = msgspec.Meta(pattern=r"^\S+$")

DurationUnit = Literal["second", "minute", "hour", "day"]
TracesSampler = Literal[
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
]


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Every knob of the service; field names are the lower-cased environment variable names."""

    # Production unless told otherwise: development (`just dev`) and test are chosen explicitly.
    environment: Literal["development", "test", "production"] = "production"
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/orders"
    redis_url: str = "redis://127.0.0.1:6379/0"
    rabbitmq_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    # The API's alone. No default: outside development the API requires a real one; in
    # development an empty value becomes a random secret per process start (tokens die with
    # the process). The other processes neither need nor check it.
    jwt_secret: str = ""
    # HS256 signs with JWT_SECRET; RS256 and ES256 with JWT_PRIVATE_KEY (PEM text or a file
    # path; in development only, when empty, a random key per process start).
    jwt_algorithm: Algorithm = "HS256"
    jwt_private_key: str = ""
    # Public keys (PEMs one after the other, or comma-separated paths) of earlier private
    # keys: tokens they signed keep verifying until they expire, and the JWKS lists them.
    jwt_previous_public_keys: str = ""
    # Every access token names its issuer (`iss`) and the API it is for (`aud`); a token that
    # names others is refused. Defaults work as they are; a service that verifies our tokens
    # from the JWKS checks these two values.
    jwt_issuer: Annotated[str, _ONE_WORD] = "order-service"
    jwt_audience: Annotated[str, _ONE_WORD] = "order-api"
    access_token_expire_minutes: int = 30
    # How long a refresh token lives from its issue; each refresh issues a new one.
    refresh_token_expire_days: int = 15
    # A session ends this long after its login, however often it is refreshed: a refresh
    # token never outlives it.
    session_max_days: int = 90
    # Rows the session purge (features/purge_sessions/) deletes per statement; it runs hourly.
    session_purge_batch: int = 1000
    cache_ttl_seconds: int = 300
    rate_limit: str = "100/minute"
    token_rate_limit: str = "10/minute"
    # An IPv6 client is counted by its network of this prefix length (one host is commonly
    # given a whole /64, so each of its addresses would otherwise get a budget); 128: per address.
    rate_limit_ipv6_prefix: int = 64
    cors_allow_origins: str = ""
    # Comma-separated IPs/CIDRs of reverse proxies whose X-Forwarded-For/-Proto are believed;
    # empty: the TCP peer is the client, whatever the headers say.
    trusted_proxies: str = ""
    # /metrics on the API port answers only to `Authorization: Bearer <METRICS_TOKEN>`;
    # empty: /metrics is 404 on the API port.
    metrics_token: str = ""
    # Password hashes waiting for or running in the bcrypt threads, per process; past it: 503.
    bcrypt_queue_size: int = 64
    # The login role `python -m migrations` creates (or updates) with read/write rights on
    # the app's tables only; the processes then connect as it (empty: no role is managed).
    db_app_role: str = ""
    db_app_password: str = ""
    # Cost 12 is ~270 ms on one core here: slow for guessing, tolerable for a login.
    bcrypt_rounds: int = 12
    # Namespacing, so that several deployments (or test runs) can share one Redis/RabbitMQ.
    redis_prefix: str = "orders:"
    rabbitmq_exchange: str = "orders"
    rabbitmq_queue: str = "new_order"
    # Messages the dead-letter queue keeps; past it the oldest are dropped (drop-head).
    dead_letter_max_length: int = 10_000
    arq_queue: str = "arq:queue"
    # The event pipeline (workers/): consumer prefetch, the worker's pace and the outbox sweeper.
    consumer_prefetch: int = 64
    process_order_delay_s: float = 2.0
    worker_max_jobs: int = 1000
    outbox_sweep_interval_s: int = 5
    outbox_sweep_age_s: float = 5.0
    # process_order's tries before arq gives up on a job (the reconciler takes it up later).
    job_max_tries: int = 10
    # The reconciler (features/reconcile_orders/): orders still unprocessed this long after their
    # creation, with no live job, get their job again; it runs every RECONCILE_INTERVAL_S,
    # looks at up to RECONCILE_BATCH orders a run, and backs off up to RECONCILE_MAX_DELAY_S
    # between re-enqueues of an order whose job keeps failing.
    reconcile_after_s: float = 30.0
    reconcile_interval_s: int = 10
    reconcile_batch: int = 500
    reconcile_max_delay_s: float = 3600.0
    # Connections each process may hold to PostgreSQL (pool + overflow); mind max_connections
    # when scaling out: processes × (pool + overflow) + 1 LISTEN connection per API process.
    # All in the pool, none in overflow: an overflow connection is closed as soon as it is
    # returned to a full pool, so under load the API opened a connection (and asyncpg
    # introspected its types) every 20-60 requests; 15 + 0 is the same bound without that.
    db_pool_size: int = 15
    db_max_overflow: int = 0
    # How long an API process keeps vouching for the users it knew once its LISTEN link to
    # PostgreSQL is lost (GET /orders/{id} is served from the cache meanwhile); a user deleted
    # during that time keeps reading their cached orders until then. 0: stop vouching at once.
    user_directory_max_staleness_s: float = 300.0
    # Prometheus endpoints of the non-HTTP processes (0 turns one off), unauthenticated: on
    # METRICS_HOST, loopback unless a scraper elsewhere needs more (0.0.0.0: every interface).
    consumer_metrics_port: int = 9101
    worker_metrics_port: int = 9102
    metrics_host: str = "127.0.0.1"
    # The live stream (GET /orders/events): each user's event log in Redis keeps events this
    # long and at most this many (a reconnect further back starts with `event: reset`); a
    # user may hold this many open streams across all API processes; an idle stream gets a
    # comment line this often.
    sse_log_seconds: int = 3600
    sse_log_length: int = 1000
    sse_max_streams_per_user: int = 5
    sse_keepalive_s: float = 15.0
    # Tracing (shared/tracing.py), by OpenTelemetry's own variable names. Off without an
    # endpoint (the collector's base URL, e.g. http://127.0.0.1:4318; spans go to /v1/traces)
    # or with OTEL_SDK_DISABLED=true. The service name defaults per process (order-api,
    # order-consumer, order-worker); the sampler's ARG is the ratio of the *traceidratio ones.
    # OTEL_BSP_SCHEDULE_DELAY: ms between batch exports.
    otel_exporter_otlp_endpoint: str = ""
    otel_service_name: str = ""
    otel_sdk_disabled: bool = False
    otel_traces_sampler: TracesSampler = "parentbased_always_on"
    otel_traces_sampler_arg: Annotated[float, msgspec.Meta(ge=0, le=1)] = 1.0
    otel_bsp_schedule_delay: Annotated[int, msgspec.Meta(ge=1)] = 5000
    log_level: str = "INFO"
    log_json: bool | None = None
    max_body_bytes: int = 1024 * 1024

    def __post_init__(self) -> None:
        self._check_rate_limits()
        if not 1 <= self.outbox_sweep_interval_s <= 60:
            raise ValueError("OUTBOX_SWEEP_INTERVAL_S must be between 1 and 60 seconds")
        if not 1 <= self.reconcile_interval_s <= 60:
            raise ValueError("RECONCILE_INTERVAL_S must be between 1 and 60 seconds")
        if self.access_token_expire_minutes < 1 or self.refresh_token_expire_days < 1:
            raise ValueError(
                "ACCESS_TOKEN_EXPIRE_MINUTES and REFRESH_TOKEN_EXPIRE_DAYS must be at least 1"
            )
        counts = (
            self.job_max_tries,
            self.reconcile_batch,
            self.session_max_days,
            self.session_purge_batch,
        )
        if min(counts) < 1:
            raise ValueError(
                "JOB_MAX_TRIES, RECONCILE_BATCH, SESSION_MAX_DAYS and SESSION_PURGE_BATCH"
                " must be at least 1"
            )
        if self.reconcile_after_s < 0 or self.user_directory_max_staleness_s < 0:
            raise ValueError("RECONCILE_AFTER_S and USER_DIRECTORY_MAX_STALENESS_S must be >= 0")
        self.trusted_proxy_networks  # noqa: B018 - validates TRUSTED_PROXIES at start-up
        if self.metrics_token and len(self.metrics_token.encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"METRICS_TOKEN must be at least {MIN_SECRET_BYTES} bytes when set")
        if self.bcrypt_queue_size < 1 or self.dead_letter_max_length < 1:
            raise ValueError("BCRYPT_QUEUE_SIZE and DEAD_LETTER_MAX_LENGTH must be at least 1")
        if min(self.sse_log_seconds, self.sse_log_length, self.sse_max_streams_per_user) < 1:
            raise ValueError(
                "SSE_LOG_SECONDS, SSE_LOG_LENGTH and SSE_MAX_STREAMS_PER_USER must be at least 1"
            )
        if not 0.05 <= self.sse_keepalive_s <= 300:
            raise ValueError("SSE_KEEPALIVE_S must be between 0.05 and 300 seconds")
        if self.db_app_role and not self.db_app_password and self.environment == "production":
            raise ValueError("DB_APP_ROLE needs DB_APP_PASSWORD outside development and test")

    def _check_rate_limits(self) -> None:
        for value in (self.rate_limit, self.token_rate_limit):
            parse_rate(value)
        if not 1 <= self.rate_limit_ipv6_prefix <= 128:
            raise ValueError("RATE_LIMIT_IPV6_PREFIX must be a prefix length from 1 to 128")

    @property
    def cors_origins(self) -> list[str]:
        return [o.strip() for o in self.cors_allow_origins.split(",") if o.strip()]

    @property
    def trusted_proxy_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        try:
            return tuple(
                ipaddress.ip_network(item.strip(), strict=False)
                for item in self.trusted_proxies.split(",")
                if item.strip()
            )
        except ValueError as exc:
            raise ValueError(f"TRUSTED_PROXIES must list IPs or CIDRs: {exc}") from exc

    @property
    def json_logs(self) -> bool:
        return self.log_json if self.log_json is not None else self.environment == "production"


def require_signing_keys(settings: Settings) -> Settings:
    """``settings`` with the API's signing material checked and resolved, or SystemExit.

    Key files are read once, here, so a missing or unreadable key stops start-up, named.
    Idempotent: the API's factory calls it on whatever settings it is given.
    """
    try:
        return _with_signing_keys(settings)
    except ValueError as exc:
        raise SystemExit(f"invalid settings: {exc}") from exc


def _with_signing_keys(settings: Settings) -> Settings:
    secret = settings.jwt_secret
    if _digest(secret) in _PUBLISHED_SECRETS:
        raise ValueError("JWT_SECRET is a published value; generate a new one")
    if settings.environment == "development" and not secret:
        secret = secrets.token_urlsafe(32)
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise ValueError(
            f"JWT_SECRET must be set to a random value of at least {MIN_SECRET_BYTES} bytes"
            " (only ENVIRONMENT=development may leave it out)"
        )
    algorithm = settings.jwt_algorithm
    if algorithm == "HS256":
        if settings.jwt_previous_public_keys.strip():
            raise ValueError("JWT_PREVIOUS_PUBLIC_KEYS needs JWT_ALGORITHM=RS256 or ES256")
        return msgspec.structs.replace(settings, jwt_secret=secret)
    if settings.jwt_private_key.strip():
        private = pem_text(settings.jwt_private_key, "JWT_PRIVATE_KEY")
    elif settings.environment == "development":
        private = generate_private_key_pem(algorithm)
    else:
        raise ValueError(
            f"JWT_ALGORITHM={algorithm} needs JWT_PRIVATE_KEY"
            " (a PEM private key, or the path of a file holding one)"
        )
    previous = "\n".join(pem_texts(settings.jwt_previous_public_keys, "JWT_PREVIOUS_PUBLIC_KEYS"))
    signing_keys(algorithm, secret, private, previous)  # parses: or fails
    return msgspec.structs.replace(
        settings, jwt_secret=secret, jwt_private_key=private, jwt_previous_public_keys=previous
    )


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def parse_rate(value: str) -> tuple[DurationUnit, int]:
    """Parse ``"100/minute"`` into Litestar's ``(unit, count)`` form."""
    count, _, unit = value.partition("/")
    unit = unit.strip().lower().removesuffix("s")
    if unit not in ("second", "minute", "hour", "day") or not count.strip().isdigit():
        raise ValueError(f"rate limit must look like '100/minute', got {value!r}")
    if int(count) < 1:
        raise ValueError(f"rate limit must allow at least one request, got {value!r}")
    return unit, int(count)  # type: ignore[return-value]


def read_env_file(path: Path) -> dict[str, str]:
    """Read ``KEY=value`` lines; blank lines, comments and surrounding quotes are ignored."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def load_settings(
    environ: Mapping[str, str] | None = None, env_file: Path | None = Path(".env")
) -> Settings:
    """Build settings from `.env` overlaid by the real environment (the environment wins)."""
    source = dict(read_env_file(env_file)) if env_file is not None else {}
    source.update(os.environ if environ is None else environ)
    fields = set(Settings.__struct_fields__)
    data = {k.lower(): v for k, v in source.items() if k.lower() in fields}
    try:
        return msgspec.convert(data, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise SystemExit(f"invalid settings: {exc}") from exc


def load_api_settings(
    environ: Mapping[str, str] | None = None, env_file: Path | None = Path(".env")
) -> Settings:
    """``load_settings`` for the API, the one process that signs: its keys required."""
    return require_signing_keys(load_settings(environ, env_file))
