"""The headers rule (shared/http/security_headers.py) and the proxy's scheme, on ASGI messages."""

from __future__ import annotations

import ipaddress
from typing import Any, cast

from litestar.types import Message, Scope

from shared.http.client_address import forwarded_proto
from shared.http.security_headers import add_security_headers

PROXIES = (ipaddress.ip_network("10.0.0.0/8"),)


def start(*headers: tuple[bytes, bytes]) -> Any:
    return {"type": "http.response.start", "status": 200, "headers": list(headers)}


def names(message: Message) -> list[bytes]:
    return [name for name, _ in cast("Any", message)["headers"]]


def test_an_answer_without_a_cache_policy_is_not_stored_and_nosniff() -> None:
    message = start((b"content-type", b"application/json"))
    add_security_headers(message, https=False)
    assert message["headers"] == [
        (b"content-type", b"application/json"),
        (b"cache-control", b"no-store"),
        (b"pragma", b"no-cache"),
        (b"x-content-type-options", b"nosniff"),
    ]


def test_an_answer_with_its_own_cache_policy_keeps_it() -> None:
    message = start((b"Cache-Control", b"public, max-age=300"))
    add_security_headers(message, https=False)
    assert names(message) == [b"Cache-Control", b"x-content-type-options"]


def test_nothing_is_added_twice() -> None:
    message = start((b"x-content-type-options", b"nosniff"))
    add_security_headers(message, https=True)
    add_security_headers(message, https=True)
    assert sorted(names(message)) == sorted(
        [b"x-content-type-options", b"cache-control", b"pragma", b"strict-transport-security"]
    )


def test_hsts_only_over_https() -> None:
    plain, secure = start(), start()
    add_security_headers(plain, https=False)
    add_security_headers(secure, https=True)
    assert b"strict-transport-security" not in names(plain)
    assert dict(secure["headers"])[b"strict-transport-security"] == (
        b"max-age=31536000; includeSubDomains"
    )


def test_body_messages_pass_untouched() -> None:
    body = cast("Message", {"type": "http.response.body", "body": b"{}"})
    add_security_headers(body, https=True)
    assert body == {"type": "http.response.body", "body": b"{}"}


def scope(peer: str, *protos: bytes) -> Scope:
    headers = [(b"x-forwarded-proto", proto) for proto in protos]
    return cast("Scope", {"type": "http", "client": (peer, 1), "headers": headers})


def test_the_scheme_is_believed_from_a_trusted_proxy_only() -> None:
    assert forwarded_proto(scope("10.1.2.3", b"https"), PROXIES) == "https"
    assert forwarded_proto(scope("10.1.2.3", b" HTTP "), PROXIES) == "http"
    assert forwarded_proto(scope("10.1.2.3", b"http", b"https"), PROXIES) == "https"  # the last
    assert forwarded_proto(scope("203.0.113.9", b"https"), PROXIES) is None
    assert forwarded_proto(scope("10.1.2.3", b"gopher"), PROXIES) is None
    assert forwarded_proto(scope("10.1.2.3"), PROXIES) is None
    assert forwarded_proto(scope("10.1.2.3", b"https"), ()) is None
