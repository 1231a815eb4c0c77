"""An order's line: what was bought, how many, at what unit price.

Its own module because both ``money`` (the total is summed over items) and ``view`` (the
public view lists them) need it, and neither may need the other for it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

import msgspec

Money = Annotated[Decimal, msgspec.Meta(examples=[Decimal("100.50")])]


class OrderItem(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    quantity: int
    price: Money
