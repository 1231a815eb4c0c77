"""The Redis client every part of a process shares (cache, rate limiter): one pool per process."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis

# Bounded, so a stalled Redis costs a request a fraction of a second, not a hang.
SOCKET_TIMEOUT_S = 1.0


def create_redis(url: str, max_connections: int = 64) -> Redis:
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=SOCKET_TIMEOUT_S,
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=SOCKET_TIMEOUT_S,
        health_check_interval=30,
    )
    return Redis(connection_pool=pool)
