"""Request ids: take the caller's ``X-Request-ID`` (if sane) or make one, echo it, log it.

The id lives in ``shared.logs.request_id_var`` while the request is served, so every line
logged meanwhile carries ``request_id`` without anyone passing it along. The pass that does
this for every request is ``shared.http.layers``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable

REQUEST_ID_HEADER = b"x-request-id"
_SAFE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")


def request_id_of(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The caller's ``X-Request-ID`` when it is sane (the last one sent), else a new one."""
    sent = b""
    for name, value in headers:
        if name == REQUEST_ID_HEADER:
            sent = value
    if sent and _SAFE_REQUEST_ID.fullmatch(sent):
        return sent.decode("ascii")
    return uuid.uuid4().hex
