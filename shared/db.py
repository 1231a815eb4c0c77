"""Database plumbing shared by the API, the workers, the migrations and the tests."""

from __future__ import annotations

import asyncio
import inspect
import logging
from pathlib import Path

import asyncpg
from advanced_alchemy.extensions.litestar import (
    AsyncSessionConfig,
    EngineConfig,
    SQLAlchemyAsyncConfig,
)
from alembic import command
from alembic.config import Config
from litestar.types import BeforeMessageSendHookHandler, Message, Scope
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from shared.settings import Settings

logger = logging.getLogger(__name__)

# Bounds, so that a request stuck on PostgreSQL answers 503 within seconds whatever the network
# does (about 5.5 s when the connection stalls; tests/hardening/test_faults.py proves it):
# - a statement running longer than STATEMENT_TIMEOUT_MS is cancelled by PostgreSQL itself
#   (a stuck lock, a runaway query), so the client sees a clean error;
# - COMMAND_TIMEOUT_S is asyncpg's own limit per round trip, a little longer, for when no
#   answer can come at all (a half-open socket, a frozen server); SQLAlchemy then spends up
#   to 2 s more closing the dead connection;
# - connecting is bounded by CONNECT_TIMEOUT_S, and waiting for a pooled connection by
#   POOL_TIMEOUT_S.
# Every query the API runs is an index lookup of a few ms; 3 s is far above any of them.
STATEMENT_TIMEOUT_MS = 3_000
COMMAND_TIMEOUT_S = STATEMENT_TIMEOUT_MS / 1000 + 0.5
PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONNECT_TIMEOUT_S = 3.0
POOL_TIMEOUT_S = 3


# What a failing link raises when SQLAlchemy does not wrap it (a connection being set up).
RAW_CONNECTION_ERRORS = (OSError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError)


def is_connection_lost(exc: BaseException) -> bool:
    """True when the link to PostgreSQL failed, not the statement: worth a 503 or a retry.

    SQLAlchemy wraps most of these as ``OperationalError``/``InterfaceError``, but not all:
    a connection lost mid-statement is a plain ``DBAPIError`` that SQLAlchemy marks
    ``connection_invalidated``, and a new connection failing during its set-up (the
    dialect's on-connect codecs) raises asyncpg's own errors or an ``OSError`` unwrapped.
    """
    if isinstance(exc, DBAPIError):
        return exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError)
    if isinstance(exc, asyncpg.InterfaceError):
        return "connection is closed" in str(exc)  # SQLAlchemy's own test for it
    return isinstance(exc, OSError | asyncpg.PostgresConnectionError)


def engine_config(settings: Settings) -> EngineConfig:
    return EngineConfig(
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=POOL_TIMEOUT_S,
        pool_pre_ping=False,
        pool_recycle=1800,
        # Statements in errors show no bound values: an error logged during /register must
        # not carry the email or the password hash.
        hide_parameters=True,
        connect_args={
            "timeout": CONNECT_TIMEOUT_S,
            "command_timeout": COMMAND_TIMEOUT_S,
            "server_settings": {
                "statement_timeout": str(STATEMENT_TIMEOUT_MS),
                "application_name": "order-service",
            },
        },
    )


def autocommit(engine: AsyncEngine) -> AsyncEngine:
    """``engine``'s pool, its connections in autocommit: no BEGIN and COMMIT round trips.

    For a use case that is a single statement, which PostgreSQL runs atomically on its own;
    anything that needs two statements to agree keeps ``engine.begin()``.
    """
    return engine.execution_options(isolation_level="AUTOCOMMIT")


def tolerating_a_lost_connection(
    close: BeforeMessageSendHookHandler,
) -> BeforeMessageSendHookHandler:
    """advanced-alchemy's hook that closes the request's session as the response starts,
    tolerating a connection that is already gone.

    Closing rolls back what the handler left uncommitted; if the link died meanwhile the
    rollback raises, and raising here, with the response already decided, made a 500 (the
    chaos run met it on POST /token). The connection is discarded either way and nothing
    uncommitted survives it, so the response stands.
    """

    async def close_request_session(message: Message, scope: Scope) -> None:
        try:
            closing = close(message, scope)
            if inspect.isawaitable(closing):
                await closing
        except Exception as exc:
            if not is_connection_lost(exc):
                raise
            logger.warning("request session closed on a lost connection: %s", exc)

    return close_request_session


def alchemy_config(settings: Settings) -> SQLAlchemyAsyncConfig:
    """advanced-alchemy owns the engine's lifespan and hands each request a session."""
    config = SQLAlchemyAsyncConfig(
        connection_string=settings.database_url,
        engine_config=engine_config(settings),
        session_config=AsyncSessionConfig(expire_on_commit=False),
    )
    # Its hook is made for the session key it picks (unique per config), so wrap that one.
    close = config.before_send_handler
    assert callable(close), "advanced-alchemy makes the default hook in __post_init__"
    config.before_send_handler = tolerating_a_lost_connection(close)
    return config


def create_engine(settings: Settings, *, max_overflow: int | None = None) -> AsyncEngine:
    """An engine for processes that are not the API (workers, tests).

    ``max_overflow`` overrides the setting's: the worker uses 0, because its jobs reach the
    database in bursts (all that started together wake together) and an overflow connection
    is closed the moment it is returned, so every burst opened and closed connections.
    """
    cfg = engine_config(settings)
    return create_async_engine(
        settings.database_url,
        pool_size=cfg.pool_size,
        max_overflow=cfg.max_overflow if max_overflow is None else max_overflow,
        pool_timeout=cfg.pool_timeout,
        hide_parameters=True,
        connect_args=cfg.connect_args,
    )


def asyncpg_dsn(database_url: str, database: str | None = None) -> str:
    """The SQLAlchemy URL as a plain ``postgresql://`` DSN that asyncpg understands."""
    url = make_url(database_url).set(drivername="postgresql")
    if database is not None:
        url = url.set(database=database)
    return url.render_as_string(hide_password=False)


async def ensure_database(database_url: str) -> bool:
    """Create the database named in the URL if it is missing; True when it was created."""
    name = make_url(database_url).database
    if not name:
        raise ValueError("DATABASE_URL names no database")
    conn = await asyncpg.connect(asyncpg_dsn(database_url, "postgres"), timeout=CONNECT_TIMEOUT_S)
    try:
        if await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            return False
        # CREATE DATABASE takes no bind parameters; quote_ident makes the name safe.
        quoted = await conn.fetchval("SELECT quote_ident($1)", name)
        await conn.execute(f"CREATE DATABASE {quoted}")
        return True
    finally:
        await conn.close()


async def drop_database(database_url: str) -> None:
    name = make_url(database_url).database
    conn = await asyncpg.connect(asyncpg_dsn(database_url, "postgres"), timeout=CONNECT_TIMEOUT_S)
    try:
        quoted = await conn.fetchval("SELECT quote_ident($1)", name)
        await conn.execute(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")
    finally:
        await conn.close()


# The app's rights: rows of its tables, and the sequences behind their ids; nothing else.
_APP_ROLE_STATEMENTS = (
    "ALTER ROLE {role} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION"
    " NOBYPASSRLS PASSWORD {password}",
    "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
    "REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}",
    "GRANT CONNECT ON DATABASE {database} TO {role}",
    "GRANT USAGE ON SCHEMA public TO {role}",
    "GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role}",
    "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public"
    " GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role}",
    "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public GRANT USAGE ON SEQUENCES TO {role}",
)
MIGRATIONS_TABLE = "alembic_version"


async def grant_app_role(database_url: str, role: str, password: str) -> None:
    """Create or update the login role the processes use: read and write the app's rows only.

    Run by the owner after the migrations. Default privileges cover tables that later
    migrations create (as the same owner); Alembic's own table stays out of reach.
    """
    conn = await asyncpg.connect(asyncpg_dsn(database_url), timeout=CONNECT_TIMEOUT_S)
    try:
        owner = await conn.fetchval("SELECT current_user")
        if role == owner:
            raise ValueError("DB_APP_ROLE must not be the role that owns and migrates the database")
        # Identifiers and literals cannot be bind parameters here; format() quotes them.
        quoted = {
            "role": await conn.fetchval("SELECT quote_ident($1)", role),
            "owner": await conn.fetchval("SELECT quote_ident($1)", owner),
            "database": await conn.fetchval("SELECT quote_ident(current_database())"),
            "password": await conn.fetchval(
                "SELECT coalesce(quote_literal(nullif($1, '')), 'NULL')", password
            ),
        }
        tables = await conn.fetch(
            "SELECT quote_ident(tablename) AS name FROM pg_tables"
            " WHERE schemaname = 'public' AND tablename <> $1",
            MIGRATIONS_TABLE,
        )
        async with conn.transaction():
            if not await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role):
                await conn.execute(f"CREATE ROLE {quoted['role']}")
            for statement in _APP_ROLE_STATEMENTS:
                await conn.execute(statement.format(**quoted))
            for table in tables:
                await conn.execute(
                    f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table['name']} TO {quoted['role']}"
                )
    finally:
        await conn.close()


def migrate(database_url: str, revision: str = "head") -> None:
    """Create the database if missing and upgrade it; synchronous, as Alembic runs its own loop."""
    asyncio.run(ensure_database(database_url))
    cfg = Config(str(PROJECT_ROOT / "alembic.ini"))
    cfg.attributes["database_url"] = database_url
    command.upgrade(cfg, revision)
