"""What every routed request goes through, in one pass and one wrapper of ``send``: the client's
address, the request id, the request metrics, and the headers inner layers ask for.

Four middlewares did this, each wrapping ``send`` (BENCHMARKS.md, issue 22: a cached GET's
layers cost more than its handler). The rules stay in their modules
(``shared.http.client_address``, ``shared.http.request_ids``, ``shared.http.metrics``); this
is only the pass that applies them:

1. ``scope["client"]`` (and ``scheme``) from the peer and ``TRUSTED_PROXIES``;
2. the request id (the caller's, if sane, or a new one) in the log context and echoed as
   ``X-Request-ID``;
3. the answer's status and time counted in the process's ``RequestTally`` (not for the ops
   paths); a 401 or 429 an inner middleware raises is counted with its own status;
4. headers an inner layer asked for (the limiter's ``RateLimit-*``, ``answer_headers``) added
   to the answer unless the answer set them itself.

The security headers are Litestar's ``before_send`` hook (``shared.http.security_headers``):
they are also owed to the answers the router gives before any middleware runs (404, 405).
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Sequence

from litestar.enums import ScopeType
from litestar.exceptions import HTTPException
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from shared.http.client_address import Network, resolve_client
from shared.http.metrics import TALLY, RequestTally
from shared.http.request_ids import REQUEST_ID_HEADER, request_id_of
from shared.http.routes import ops_path_patterns
from shared.logs import request_id_var

_ANSWER_HEADERS = "answer_headers"  # in scope["state"]: what inner layers add to the answer


def answer_headers(scope: Scope) -> list[tuple[bytes, bytes]]:
    """The headers an inner layer wants on the answer (each unless the answer has its own)."""
    state = scope["state"]
    headers: list[tuple[bytes, bytes]] | None = state.get(_ANSWER_HEADERS)
    if headers is None:
        headers = state[_ANSWER_HEADERS] = []
    return headers


@functools.lru_cache(maxsize=1024)
def counted(path_template: str, excluded: tuple[str, ...]) -> bool:
    """Whether a route's requests are counted: not the ops paths'. Remembered per route."""
    return not any(re.match(pattern, path_template) for pattern in excluded)


class RequestLayers:
    """Client address, request id, metrics and the inner layers' headers, in one pass."""

    def __init__(
        self, app: ASGIApp, proxies: Sequence[Network], tally: RequestTally = TALLY
    ) -> None:
        self.app = app
        self.proxies = tuple(proxies)
        self.tally = tally
        self.excluded = tuple(ops_path_patterns())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            if self.proxies:
                resolve_client(scope, self.proxies)
            await self.app(scope, receive, send)
            return
        if self.proxies:
            resolve_client(scope, self.proxies)
        request_id = request_id_of(scope["headers"])
        id_header = (REQUEST_ID_HEADER, request_id.encode())
        state = scope["state"]
        status = 500  # unless an answer starts, or an exception says otherwise

        async def send_answer(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = message["headers"] = [*message.get("headers", ()), id_header]
                asked: list[tuple[bytes, bytes]] | None = state.get(_ANSWER_HEADERS)
                if asked:
                    present = {name.lower() for name, _ in headers}
                    headers.extend(h for h in asked if h[0] not in present)
            await send(message)

        method, path = scope["method"], scope["path_template"]
        count = counted(path, self.excluded)
        if count:
            self.tally.start(method, path)
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_answer)
        except HTTPException as exc:  # a 401 or 429 from a middleware: answered outside
            status = exc.status_code
            raise
        finally:
            request_id_var.reset(token)
            if count:
                self.tally.record(method, path, status, time.perf_counter() - started)
