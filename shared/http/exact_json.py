"""Request bodies decoded with JSON numbers as ``Decimal``: no float between a client and money.

Litestar decodes a body to Python objects before converting it to the handler's Struct; by
default ``0.1`` would pass through a float on the way. This request class decodes every JSON
number with a fraction or exponent straight to ``Decimal`` instead.

It also decodes only what says it is JSON: a body sent as ``text/plain`` (or any other type)
is a 415. A cross-site form or ``text/plain`` POST needs no CORS preflight, so parsing it
anyway would let any web page post JSON to us from a visitor's browser.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec
from litestar import Request
from litestar.exceptions import ClientException, HTTPException
from litestar.status_codes import HTTP_415_UNSUPPORTED_MEDIA_TYPE
from litestar.types import Empty

_decoder = msgspec.json.Decoder(float_hook=Decimal)


def is_json_media_type(content_type: str) -> bool:
    """``application/json`` or an ``application/*+json`` type, parameters (charset) aside."""
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


class ExactJSONRequest(Request[Any, Any, Any]):
    async def json(self) -> Any:
        if self._json is Empty:
            if (cached := self._connection_state.json) is not Empty:
                self._json = cached
            else:
                if not is_json_media_type(self.headers.get("content-type", "")):
                    raise HTTPException(
                        status_code=HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                        detail="the body must be JSON: send Content-Type: application/json",
                    )
                body = await self.body()
                try:
                    decoded = _decoder.decode(body or b"null")
                except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # or not even UTF-8
                    raise ClientException(f"JSON is malformed: {exc}") from exc
                except RecursionError as exc:  # [[[[…]]]]: msgspec's depth limit, not ours
                    raise ClientException("JSON is nested too deeply") from exc
                self._json = self._connection_state.json = decoded
        return self._json
