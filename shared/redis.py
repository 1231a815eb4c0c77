"""The Redis client every part of a process shares (cache, rate limiter): one pool per process."""

from __future__ import annotations

from collections.abc import Iterable

from redis.asyncio import BlockingConnectionPool, Connection, Redis
from redis.asyncio.connection import AbstractConnection

# Bounded, so a stalled Redis costs a request a fraction of a second, not a hang.
SOCKET_TIMEOUT_S = 1.0


class ResetAwareConnection(Connection):
    """A write to a socket the server has just reset is a connection error, on any loop.

    Under uvloop (what uvicorn runs the API on) such a write raises ``RuntimeError`` ("the
    handler is closed") instead of an ``OSError``; redis-py only turns ``OSError`` into its
    ``ConnectionError``, so callers that tolerate Redis outages (the limiter, the cache) saw
    a 500. The chaos run met it when a Redis link was reset while connecting.
    """

    async def _send_packed_command(self, command: Iterable[bytes]) -> None:
        try:
            await super()._send_packed_command(command)
        except RuntimeError as exc:
            writer = self._writer
            if writer is None or writer.transport.is_closing():
                raise ConnectionResetError(f"connection reset: {exc}") from exc
            raise


class KnowingPool(BlockingConnectionPool):
    """Hands out a pooled connection after a look at what the event loop already knows.

    redis-py asks the socket of every connection it checks out for unread data
    (``can_read_destructive``: an awaited read under a zero timeout, per command). Unread data
    cannot be there: a command cut off mid-reply (timeout, cancellation, error) disconnects its
    connection before it returns to the pool. What can happen is the server closing it
    meanwhile (a restart, ``CLIENT KILL``); the loop has then seen the EOF already, and the
    connection is made again here, as redis-py's check did.
    """

    async def ensure_connection(self, connection: AbstractConnection) -> None:
        reader = getattr(connection, "_reader", None)  # redis-py's StreamReader, once connected
        if reader is None or reader.at_eof():
            await connection.disconnect()
            await connection.connect()  # type: ignore[no-untyped-call]


def create_redis(url: str, max_connections: int = 64) -> Redis:
    pool = KnowingPool.from_url(
        url,
        max_connections=max_connections,
        timeout=SOCKET_TIMEOUT_S,
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=SOCKET_TIMEOUT_S,
        health_check_interval=30,
        connection_class=ResetAwareConnection,
    )
    return Redis.from_pool(pool)  # owns the pool: aclose() disconnects it too
