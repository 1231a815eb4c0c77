"""GET /orders/{id} answers with the shared ``OrderView``; of a cached one it reads the owner."""

from __future__ import annotations

import msgspec


class CachedOwner(msgspec.Struct):
    """Decoding only ``user_id`` lets msgspec skip the rest of the cached bytes."""

    user_id: int


owner_decoder = msgspec.json.Decoder(CachedOwner)
