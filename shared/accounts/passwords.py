"""Passwords: bcrypt off the event loop, in a bounded pool of low-priority threads.

bcrypt releases the GIL, so hashing in threads leaves the loop free for other requests; the
pool is as wide as the machine, its threads niced, and the queue in front of it bounded, so
a burst of logins is a prompt 503 rather than a stall.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import bcrypt

from shared.accounts.credentials import BCRYPT_MAX_BYTES

_T = TypeVar("_T")


def _lower_priority() -> None:
    """Run bcrypt threads at a lower CPU priority (Linux: niceness is per thread).

    bcrypt releases the GIL, but a burst of logins still competes with the event loop for
    the cores; niced, it takes what the loop leaves, so other requests keep their latency.
    """
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BCRYPT_NICENESS)


BCRYPT_NICENESS = 10
# No more hashing threads than cores: a burst of logins queues instead of thrashing.
_bcrypt_pool = ThreadPoolExecutor(
    max_workers=os.cpu_count() or 2, thread_name_prefix="bcrypt", initializer=_lower_priority
)


BCRYPT_BUSY_RETRY_AFTER_S = 1


class BcryptBusy(Exception):
    """More password hashes waiting than the process allows: try again in a moment.

    Plain Python: the HTTP side answers it with 503 and ``Retry-After:
    BCRYPT_BUSY_RETRY_AFTER_S`` (``shared.http.errors``).
    """


class BcryptQueue:
    """Bounds the hashes a process holds (running plus waiting): a burst past it is a prompt
    503, not a queue that grows without end while every caller waits longer."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.pending = 0

    async def run(self, fn: Callable[[bytes, bytes], _T], secret: bytes, other: bytes) -> _T:
        if self.pending >= self.size:
            raise BcryptBusy
        self.pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(_bcrypt_pool, fn, secret, other)
        finally:
            self.pending -= 1


# One per process, like the threads it feeds; the app sizes it from BCRYPT_QUEUE_SIZE.
bcrypt_queue = BcryptQueue(size=64)


async def hash_password(password: str, rounds: int) -> bytes:
    """Hash off the event loop, in the low-priority bcrypt threads (503 when they are full)."""
    return await bcrypt_queue.run(bcrypt.hashpw, password.encode(), bcrypt.gensalt(rounds))


async def verify_password(password: str, password_hash: bytes) -> bool:
    secret = password.encode()
    if len(secret) > BCRYPT_MAX_BYTES:
        return False  # no stored password is longer (registration refuses it); bcrypt would raise
    return await bcrypt_queue.run(bcrypt.checkpw, secret, password_hash)


def bcrypt_cost(password_hash: bytes) -> int | None:
    """The cost a hash was made with (``$2b$12$…`` → 12), or None if it is not bcrypt's form."""
    parts = password_hash.split(b"$")
    return int(parts[2]) if len(parts) > 3 and parts[2].isdigit() else None
