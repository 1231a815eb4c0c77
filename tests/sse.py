"""A small Server-Sent Events client for tests, reading a real HTTP stream with httpx as a
fetch-based browser client would (bearer header, ``Last-Event-ID`` to resume)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.accounts import Account


@dataclass(frozen=True)
class Message:
    """One dispatched block: an event (``event``/``id``/``data``) or a comment line."""

    event: str | None = None
    id: str | None = None
    data: str = ""
    comment: str | None = None
    received: float = field(default_factory=time.time)

    @property
    def order(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.data)
        return value


END = Message(comment="<end of stream>")


def parse_block(lines: list[str]) -> Message:
    fields: dict[str, list[str]] = {}
    comment = None
    for line in lines:
        if line.startswith(":"):
            comment = line[1:].strip()
            continue
        name, _, value = line.partition(":")
        fields.setdefault(name, []).append(value.removeprefix(" "))
    return Message(
        event=fields.get("event", [None])[-1],
        id=fields.get("id", [None])[-1],
        data="\n".join(fields.get("data", [])),
        comment=comment if not fields else None,
    )


class EventStream:
    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.messages: asyncio.Queue[Message] = asyncio.Queue()
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        block: list[str] = []
        try:
            async for line in self.response.aiter_lines():
                if line:
                    block.append(line)
                elif block:
                    await self.messages.put(parse_block(block))
                    block = []
        except httpx.HTTPError:
            pass
        await self.messages.put(END)

    async def next(self, within: float = 5.0, *, comments: bool = False) -> Message:
        """The next event (comments skipped unless asked for), or END when the stream closed."""
        deadline = time.monotonic() + within
        while True:
            left = deadline - time.monotonic()
            message = await asyncio.wait_for(self.messages.get(), max(left, 0.001))
            if comments or message.comment is None or message is END:
                return message

    async def events(self, count: int, within: float = 10.0) -> list[Message]:
        deadline = time.monotonic() + within
        received: list[Message] = []
        while len(received) < count:
            message = await self.next(max(deadline - time.monotonic(), 0.001))
            assert message is not END, f"the stream ended after {len(received)} events"
            received.append(message)
        return received

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self.response.aclose()


@asynccontextmanager
async def open_stream(
    client: httpx.AsyncClient,
    account: Account | None = None,
    last_event_id: str | None = None,
    *,
    token: str | None = None,
) -> AsyncIterator[EventStream]:
    """GET /orders/events as ``account`` (or with ``token``), answered 200 and streaming."""
    headers = {"Authorization": f"Bearer {token or (account.token if account else '')}"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    request = client.build_request("GET", "/orders/events", headers=headers)
    response = await client.send(request, stream=True)
    try:
        assert response.status_code == 200, (response.status_code, await response.aread())
        stream = EventStream(response)
        try:
            yield stream
        finally:
            await stream.close()
    finally:
        await response.aclose()
