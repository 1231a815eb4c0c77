"""Network faults between the code under test and the real PostgreSQL, Redis and RabbitMQ.

``FaultyLink`` is a TCP relay on a free local port. Point a URL at it (``via``) and a test
can break the path without touching the shared server:

- ``refuse()``: new connections are accepted and dropped at once (a service that is down);
- ``cut()``: every live connection is reset (a crash, a failover, a dropped NAT entry);
- ``stall()``: connections stay open but nothing gets through in either direction, and new
  ones hang the same way (a partition or a frozen server: the case timeouts exist for);
- ``restore()``: back to normal. Stalled connections are reset, as after a real partition
  (their protocol state is lost), so clients must reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

T = TypeVar("T")

DEFAULT_PORTS = {"amqp": 5672, "redis": 6379, "postgresql": 5432}


def via(url: str, port: int, host: str = "127.0.0.1") -> str:
    """``url`` pointing at ``host:port``, credentials, path and query kept."""
    parts = urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@{host}:{port}" if credentials else f"{host}:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


def target_of(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    scheme = parts.scheme.split("+")[0]  # postgresql+asyncpg
    return parts.hostname or "127.0.0.1", parts.port or DEFAULT_PORTS[scheme]


class FaultyLink:
    """The relay runs on its own event loop in a thread of its own.

    Litestar's test clients run the app in another thread and block the test's loop for the
    length of each request, so a relay on the test's loop could pass nothing on meanwhile.
    The controls are plain methods, safe to call from any thread or loop; each returns once
    the relay has applied it.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self._target = target
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.refusing = False
        self.stalled = False
        self.accepted = 0  # connections relayed to the server, over the link's life

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def url(self, url: str) -> str:
        """``url`` rerouted through this link."""
        return via(url, self.port)

    def start(self) -> None:
        self._thread.start()
        self._server = self._run(asyncio.start_server(self._accept, "127.0.0.1", 0))

    def refuse(self) -> None:
        self.refusing = True

    def cut(self) -> None:
        self._call(self._cut)

    def down(self) -> None:
        """Refuse new connections and reset the live ones: the service is gone."""
        self.refuse()
        self.cut()

    def stall(self) -> None:
        self.stalled = True

    def restore(self) -> None:
        if self.stalled:
            self.stalled = False
            self.cut()
        self.refusing = False

    def close(self) -> None:
        self.refusing = True
        self._run(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    def _call(self, func: Callable[[], None]) -> None:
        async def call() -> None:
            func()

        self._run(call())

    def _cut(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _close(self) -> None:
        self._cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.transport.abort()
            return
        self._writers.add(writer)
        if self.stalled:  # hold it open, relay nothing, until restore() resets it
            self._spawn(self._swallow(reader))
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            self._writers.discard(writer)
            writer.transport.abort()
            return
        self.accepted += 1
        self._writers.add(up_writer)
        self._spawn(self._pipe(reader, up_writer))
        self._spawn(self._pipe(up_reader, writer))

    async def _swallow(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while await reader.read(65536):
                pass

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                if self.stalled:
                    continue  # lost in the partition
                sink.write(data)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._writers.discard(sink)
            sink.transport.abort()


StartLink = Callable[[str], FaultyLink]
