"""Bodies over 1 MiB are a JSON 413, with or without Content-Length; exactly 1 MiB is accepted."""

from __future__ import annotations

import uuid
from typing import cast

from litestar.types import HTTPRequestEvent, Message, Scope

from tests.orders import Client

ONE_MIB = 1024 * 1024


def padded_registration(size: int) -> bytes:
    """A valid registration whose JSON is exactly ``size`` bytes (the padding is ignored)."""
    head = f'{{"email": "big-{uuid.uuid4().hex[:12]}@example.com", "password": "pass1234", "pad": "'
    return (head + "x" * (size - len(head) - 2) + '"}').encode()


async def test_body_over_1_mib_is_413_json(client: Client) -> None:
    response = await client.post(
        "/register",
        content=padded_registration(ONE_MIB + 1),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["detail"]


async def test_streamed_body_over_1_mib_without_length_is_413_json(client: Client) -> None:
    """Chunked upload with no Content-Length, driven over ASGI by hand (the test client cannot
    stream a request body): the limit holds on the bytes that actually arrive."""
    body = padded_registration(2 * ONE_MIB)
    chunks = [body[start : start + 64 * 1024] for start in range(0, len(body), 64 * 1024)]
    sent: list[Message] = []

    async def receive() -> HTTPRequestEvent:
        chunk = chunks.pop(0) if chunks else b""
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/register",
        "raw_path": b"/register",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver.local"), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver.local", 80),
        "state": {},
    }
    # On the app's own event loop, as the test client runs every request.
    client.blocking_portal.call(client.app, cast("Scope", scope), receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    assert start["status"] == 413
    assert headers["content-type"].startswith("application/json")


async def test_form_over_1_mib_to_token_is_413_json(client: Client) -> None:
    form = b"username=a%40example.com&password=" + b"x" * ONE_MIB
    response = await client.post(
        "/token", content=form, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert response.status_code == 413
    assert response.headers["content-type"].startswith("application/json")


async def test_body_of_exactly_1_mib_is_accepted(client: Client) -> None:
    response = await client.post(
        "/register",
        content=padded_registration(ONE_MIB),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 201, response.text
