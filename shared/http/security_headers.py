"""The headers every answer carries, added in one place to the ``http.response.start`` message.

Litestar's ``before_send`` hook sees every message the app sends: handlers' answers, error
answers, and those Litestar gives before any route or middleware runs (404, 405). So each
answer, whatever produced it, gets:

- ``X-Content-Type-Options: nosniff``: a browser never guesses a type other than the one sent
  (a JSON error echoing input must not be read as HTML or script).
- ``Cache-Control: no-store`` and ``Pragma: no-cache`` unless the answer set its own
  ``Cache-Control``. RFC 6749 §5.1 asks this of /token's answers (tokens must not be stored);
  the same default keeps every answer with a user's data out of shared and browser caches.
  ``no-store`` rather than ``private, no-cache``: nothing here can be revalidated (no ETag or
  Last-Modified), so ``no-cache`` would only add a copy on the client's disk. ``X-Cache`` on
  GET /orders/{id} is about the server's Redis, not HTTP caches; it needs nothing else.
- ``Strict-Transport-Security`` (one year, subdomains) when the request came over HTTPS: the
  scheme a trusted proxy reported in ``X-Forwarded-Proto`` (``shared.http.client_address``), or
  the connection's own. Never for a client that only claims HTTPS itself.

What each route sends (API.md, "Cross-cutting"):

============================================  =================================================
route                                          Cache-Control
============================================  =================================================
POST /token, /token/revoke, /register          ``no-store`` (+ ``Pragma: no-cache``)
/users/me, /orders…, every error, /health,     ``no-store`` (+ ``Pragma: no-cache``)
/ready, /metrics, /schema pages and schema
GET /.well-known/jwks.json                     ``public, max-age=300`` (its own: public keys)
/schema/assets/… (versioned files)             ``public, max-age=31536000, immutable``
============================================  =================================================

``add_security_headers`` is the whole rule, a plain function on the message; the hook only
decides ``https`` (a later fusion of the middleware layers can call the function directly).
"""

from __future__ import annotations

from collections.abc import Sequence

from litestar.types import Message, Scope

from shared.http.client_address import Network, forwarded_proto

ONE_YEAR_S = 365 * 24 * 3600
NOSNIFF = (b"x-content-type-options", b"nosniff")
NO_STORE = ((b"cache-control", b"no-store"), (b"pragma", b"no-cache"))
HSTS = (b"strict-transport-security", f"max-age={ONE_YEAR_S}; includeSubDomains".encode())


def add_security_headers(message: Message, https: bool) -> None:
    """Add the headers above to an ``http.response.start`` message (other messages pass)."""
    if message["type"] != "http.response.start":
        return
    headers = list(message.get("headers") or ())
    names = {name.lower() for name, _ in headers}
    if b"cache-control" not in names:
        headers.extend(NO_STORE)
    if NOSNIFF[0] not in names:
        headers.append(NOSNIFF)
    if https and HSTS[0] not in names:
        headers.append(HSTS)
    message["headers"] = headers


class SecurityHeaders:
    """The app's ``before_send`` hook: ``add_security_headers`` on every answer."""

    def __init__(self, proxies: Sequence[Network]) -> None:
        self.proxies = tuple(proxies)

    async def __call__(self, message: Message, scope: Scope) -> None:
        if message["type"] == "http.response.start":
            add_security_headers(message, self._over_https(scope))

    def _over_https(self, scope: Scope) -> bool:
        """Once ``shared.http.layers`` ran, ``scheme`` says it; a 404 or 405 is answered
        before it runs, so a trusted peer's ``X-Forwarded-Proto`` is read here as it would."""
        if scope.get("scheme") == "https":
            return True
        return bool(self.proxies) and forwarded_proto(scope, self.proxies) == "https"
