"""Request bodies decoded with JSON numbers as ``Decimal``: no float between a client and money.

Litestar decodes a body to Python objects before converting it to the handler's Struct; by
default ``0.1`` would pass through a float on the way. This request class decodes every JSON
number with a fraction or exponent straight to ``Decimal`` instead.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec
from litestar import Request
from litestar.exceptions import ClientException
from litestar.types import Empty

_decoder = msgspec.json.Decoder(float_hook=Decimal)


class ExactJSONRequest(Request[Any, Any, Any]):
    async def json(self) -> Any:
        if self._json is Empty:
            if (cached := self._connection_state.json) is not Empty:
                self._json = cached
            else:
                body = await self.body()
                try:
                    decoded = _decoder.decode(body or b"null")
                except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # or not even UTF-8
                    raise ClientException(f"JSON is malformed: {exc}") from exc
                except RecursionError as exc:  # [[[[…]]]]: msgspec's depth limit, not ours
                    raise ClientException("JSON is nested too deeply") from exc
                self._json = self._connection_state.json = decoded
        return self._json
