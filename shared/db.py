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
argument. The hot order statements are ``Prepared``: the same Core statement, run on that
connection's asyncpg connection without SQLAlchemy's execution path (see the class).
No ORM session per request: advanced-alchemy's request session (what the account
slices used through its Litestar plugin) opened a transaction for every handler that
injected it and tied the connection to the response's lifetime; here the handler chooses, and
holds a connection only inside its block (not, say, while bcrypt runs).
"""

from __future__ import annotations

import collections
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import msgspec
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql import CompoundSelect, Select

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


class Prepared:
    """A Core statement run on the pooled connection's asyncpg connection, not through
    SQLAlchemy's execution path.

    Why: on the order paths SQLAlchemy's execute (cache key, execution context, the adapter's
    lock and greenlet hop, the result and row layers) cost 4-5x the driver's own work for the
    same statement (BENCHMARKS.md, issue 22). The Core statement stays the one definition: it
    is compiled once for the connection's dialect (``$n`` parameters in a fixed order, each
    value through its type's bind processor, so JSON, enums and the UTC rule bind as they do
    through SQLAlchemy), and asyncpg's statement cache prepares it once per connection. The
    connection is the pool's, so the pool's bounds, timeouts and server settings are the
    same ones.

    What differs from ``conn.execute``, on purpose:

    - rows are named tuples of the driver's values, without SQLAlchemy's result processors:
      an enum column is its text, ``timestamptz`` is aware (asyncpg's own), JSON is decoded by
      the codec the dialect installed on the connection; ``order_view`` takes either;
    - only on ``Database.connect()``'s autocommit connections: in a transaction (``begin()``)
      SQLAlchemy starts it lazily at its first statement, so a statement here could run
      outside it; there the statement goes through ``conn.execute`` instead, same rows;
    - a statement must not expand a parameter at execution (``in_`` over a list): bind an
      array and compare with ``any_`` instead.

    Errors are SQLAlchemy's, as ``conn.execute`` raises them (reproduced from SQLAlchemy 2.1's
    asyncpg dialect and ``Connection._handle_dbapi_exception``; tests/platform/test_prepared.py
    fails if that changes): the driver's error translated by the dialect's adapter (an
    ``IntegrityError`` for a foreign key, ``sqlstate`` kept), and a connection that failed
    under the statement invalidated, so the pool never hands it out again, with
    ``connection_invalidated`` set (``is_connection_lost``: a 503).
    """

    __slots__ = ("_binds", "_dialect", "_row", "_sql", "statement")

    def __init__(
        self, statement: Select[*tuple[Any, ...]] | CompoundSelect[*tuple[Any, ...]]
    ) -> None:
        self.statement = statement
        self._dialect: Dialect | None = None
        self._sql = ""
        # Each $n's name, whether the caller must give it, its value if not, its processor.
        self._binds: list[tuple[str, bool, Any, Callable[[Any], Any] | None]] = []
        self._row: Callable[[Any], Any] | None = None

    def _compile(self, dialect: Dialect) -> None:
        compiled = self.statement.compile(dialect=dialect)
        if "POSTCOMPILE" in compiled.string or compiled.positiontup is None:
            raise ValueError("a Prepared statement binds each value once, in $n order")
        binds: list[tuple[str, bool, Any, Callable[[Any], Any] | None]] = []
        for name in compiled.positiontup:
            bind = compiled.binds[name]
            default = None if bind.required else bind.effective_value
            binds.append((name, bind.required, default, bind.type._cached_bind_processor(dialect)))
        self._sql, self._binds, self._row, self._dialect = compiled.string, binds, None, dialect

    def _args(self, params: Mapping[str, Any]) -> list[Any]:
        args = []
        for name, required, default, process in self._binds:
            value = params[name] if required else params.get(name, default)
            args.append(value if process is None or value is None else process(value))
        return args

    async def all(self, conn: AsyncConnection, params: Mapping[str, Any]) -> Sequence[Any]:
        """Every row the statement returns, as named tuples (attribute access, like a Row)."""
        sync = conn.sync_connection
        if sync is None or sync.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
            rows: Sequence[Any] = (await conn.execute(self.statement, params)).all()
            return rows
        if self._dialect is not conn.dialect:
            self._compile(conn.dialect)
        args = self._args(params)
        pooled = await conn.get_raw_connection()
        driver: asyncpg.Connection = pooled.driver_connection
        try:
            records = await driver.fetch(self._sql, *args)
        except BaseException as exc:
            error = await _translated(conn, pooled.dbapi_connection, self._sql, exc)
            if error is exc:
                raise
            raise error from exc
        if not records:
            return []
        make = self._row
        if make is None:
            fields = list(records[0].keys())
            row_type: Any = collections.namedtuple("Row", fields, rename=True)  # type: ignore[misc]
            make = self._row = row_type._make
        return [make(record) for record in records]

    async def one_or_none(self, conn: AsyncConnection, params: Mapping[str, Any]) -> Any | None:
        """The statement's one row, or None; more than one is a bug in the statement."""
        rows = await self.all(conn, params)
        if len(rows) > 1:
            raise RuntimeError("a statement for one row returned several")
        return rows[0] if rows else None


async def _translated(
    conn: AsyncConnection, adapted: Any, sql: str, exc: BaseException
) -> BaseException:
    """``exc`` as ``conn.execute`` would raise it, the connection invalidated if it failed.

    The link failed when the driver says the connection is closed, or when the error is not
    the server's answer to the statement (a timeout, a socket error, a cancellation in the
    middle of a round trip leave the connection in an unknown state): SQLAlchemy invalidates
    in the first case and for cancellations; here every such case is, so the pool makes a new
    connection rather than hand this one out.
    """
    driver = adapted.driver_connection
    lost = driver.is_closed() or not isinstance(exc, asyncpg.PostgresError)
    if lost:
        await conn.invalidate(exc)
    if not isinstance(exc, Exception):
        return exc  # a cancellation stays one
    dbapi = conn.dialect.loaded_dbapi
    try:
        adapted._handle_exception(exc)  # raises the dialect's DBAPI-level translation
    except dbapi.Error as translated:
        return DBAPIError.instance(
            sql,
            None,
            translated,
            dbapi.Error,
            hide_parameters=True,
            connection_invalidated=lost,
            dialect=conn.dialect,
        )
    except BaseException as untranslated:  # noqa: BLE001 - OSError, TimeoutError: as they are
        return untranslated
    return exc  # unreachable: _handle_exception always raises
