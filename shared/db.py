"""The database engine every process runs on, and the one way slices reach it: ``Database``.

One idiom for every slice, order and account alike: take a connection from the pool,

- ``async with db.connect() as conn:`` for a use case that is one statement (or reads that
  need not agree): the connection is in autocommit, so PostgreSQL runs each statement
  atomically on its own and no BEGIN/COMMIT round trips are paid. The order paths (POST
  /orders without a key, GET, PATCH, the list, ``process_order``) were moved to this for
  speed (BENCHMARKS.md): a transaction around one statement cost two round trips of three;
- ``async with db.begin() as conn:`` where statements must agree (a row lock held across
  them, an insert that needs the look-up before it): a transaction on a connection of the
  same pool, committed when the block ends, rolled back when it raises.

Both hand out a plain SQLAlchemy Core ``AsyncConnection``; queries take it as their first
argument. No ORM session per request: advanced-alchemy's request session (what the account
slices used through its Litestar plugin) opened a transaction for every handler that
injected it and tied the connection to the response's lifetime; here the handler chooses, and
holds a connection only inside its block (not, say, while bcrypt runs).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import msgspec
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from shared.settings import Settings

logger = logging.getLogger(__name__)

# Bounds, so that a request stuck on PostgreSQL answers 503 within seconds whatever the network
# does (about 5.5 s when the connection stalls; tests/hardening/faults/test_postgres.py proves it):
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


def _encode_json(value: object) -> str:
    return msgspec.json.encode(value).decode()


def create_engine(settings: Settings, *, max_overflow: int | None = None) -> AsyncEngine:
    """The process's engine (API, workers, tools, tests): one pool, bounded everywhere.

    ``max_overflow`` overrides the setting's: the worker uses 0, because its jobs reach the
    database in bursts (all that started together wake together) and an overflow connection
    is closed the moment it is returned, so every burst opened and closed connections.
    JSON columns are encoded by msgspec, as advanced-alchemy's engine did for the API.
    """
    return create_async_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow if max_overflow is None else max_overflow,
        pool_timeout=POOL_TIMEOUT_S,
        pool_pre_ping=False,
        pool_recycle=1800,
        # Statements in errors show no bound values: an error logged during /register must
        # not carry the email or the password hash.
        hide_parameters=True,
        json_serializer=_encode_json,
        json_deserializer=msgspec.json.decode,
        connect_args={
            "timeout": CONNECT_TIMEOUT_S,
            "command_timeout": COMMAND_TIMEOUT_S,
            "server_settings": {
                "statement_timeout": str(STATEMENT_TIMEOUT_MS),
                "application_name": "order-service",
            },
        },
    )


class Database:
    """The way to PostgreSQL: ``connect()`` for one statement, ``begin()`` for a transaction.

    Built once per process around its engine (the composition root owns and disposes it).
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        # The same pool, its connections in autocommit: no BEGIN and COMMIT round trips.
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        """A pooled connection in autocommit: each statement is its own transaction."""
        async with self._autocommit.connect() as conn:
            yield conn

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        """A pooled connection in a transaction: committed at the block's end, rolled back
        if it raises."""
        async with self.engine.begin() as conn:
            yield conn

    async def dispose(self) -> None:
        await self.engine.dispose()


def asyncpg_dsn(database_url: str, database: str | None = None) -> str:
    """The SQLAlchemy URL as a plain ``postgresql://`` DSN that asyncpg understands."""
    url = make_url(database_url).set(drivername="postgresql")
    if database is not None:
        url = url.set(database=database)
    return url.render_as_string(hide_password=False)
