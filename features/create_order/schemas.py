"""POST /orders: the request as clients send it, checked by the orders domain's money rules.

The domain's refusals become the 422s clients know: a rule broken inside the body is raised
from ``__post_init__`` (so msgspec reports it under the item's path, like any other invalid
field); the total check, which needs the whole body, is a 422 naming ``total_price``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Annotated, Any

import msgspec
from litestar.openapi.spec import OpenAPIType, Schema

from shared.http.errors import UnprocessableEntity
from shared.orders.errors import OrderRuleError
from shared.orders.items import OrderItem
from shared.orders.money import CENT, MAX_TOTAL, MoneyInput, check_price, parse_amount
from shared.orders.money import checked_total as total_of_items

MAX_IDEMPOTENCY_KEY = 255
# Text PostgreSQL can store: anything but NUL (refused up front, so it is a 422, not a 500).
NO_NUL_PATTERN = r"^[^\x00]*$"
# Money as a string, as documented: digits, and at most 2 decimal places.
MONEY_PATTERN = r"^[0-9]{1,8}(\.[0-9]{1,2})?$"


def money_schema(description: str, *, nullable: bool = False) -> dict[str, object]:
    """What the OpenAPI schema says of money in a request: a JSON string or number.

    Litestar would document a Decimal as a string only, so a client (or a fuzzer) reading the
    schema would not know that numbers are accepted too.
    """
    arms = [
        Schema(type=OpenAPIType.STRING, pattern=MONEY_PATTERN, examples=["100.50"]),
        Schema(type=OpenAPIType.NUMBER, minimum=float(CENT), maximum=float(MAX_TOTAL)),
    ]
    if nullable:
        arms.append(Schema(type=OpenAPIType.NULL))
    return {"description": description, "extra": {"type": None, "one_of": None, "any_of": arms}}


class NewItem(msgspec.Struct, frozen=True, kw_only=True):
    name: Annotated[
        str,
        msgspec.Meta(
            min_length=1,
            max_length=200,
            examples=["Item 1"],
            extra_json_schema={"extra": {"pattern": NO_NUL_PATTERN}},
        ),
    ]
    quantity: Annotated[int, msgspec.Meta(ge=1, le=10_000, examples=[2])]
    # A JSON number (already exact: shared/http/exact_json.py) or string, parsed by the domain:
    # typed as Decimal, msgspec would parse strings itself, "1_000" and " 1 " included. Once
    # decoded it holds the parsed Decimal (``__post_init__``): a price is parsed once.
    price: Annotated[
        Any,
        msgspec.Meta(
            examples=["100.50"],
            extra_json_schema=money_schema("greater than 0, at most 2 decimal places"),
        ),
    ]

    def __post_init__(self) -> None:
        # In the order msgspec checked them when price was a Decimal: its type and syntax
        # while decoding, the name's NUL and the price's bounds after.
        price = _amount(self.price, "price", "decimal")
        if "\x00" in self.name:
            raise ValueError("`name` must not contain NUL characters")
        with _as_invalid_field():
            check_price(price)
        msgspec.structs.force_setattr(self, "price", price)


# The README walk-through's order (the OpenAPI document's example).
CREATE_ORDER_EXAMPLE = {
    "items": [{"name": "Item 1", "quantity": 2, "price": "100.50"}],
    "total_price": "201.00",
}


class CreateOrderRequest(msgspec.Struct, frozen=True, kw_only=True):
    items: Annotated[list[NewItem], msgspec.Meta(min_length=1, max_length=100)]
    total_price: (
        Annotated[
            Any,  # like NewItem.price: the domain parses it
            msgspec.Meta(
                examples=["201.00"],  # the sum of the item example: 2 × 100.50
                extra_json_schema=money_schema(
                    "optional; if sent, must equal the sum of quantity × price", nullable=True
                ),
            ),
        ]
        | None
    ) = None

    def __post_init__(self) -> None:
        if self.total_price is not None:  # parsed once, as NewItem.price is
            total = _amount(self.total_price, "total_price", "decimal | null")
            msgspec.structs.force_setattr(self, "total_price", total)


def checked_order(request: CreateOrderRequest) -> tuple[list[OrderItem], Decimal]:
    """The order's items and their total, by the domain's rules (the prices and the sent
    total were parsed while decoding); a refusal is a 422 naming ``total_price``."""
    items = [OrderItem(name=i.name, quantity=i.quantity, price=i.price) for i in request.items]
    try:
        return items, total_of_items(items, request.total_price)
    except OrderRuleError as exc:
        raise UnprocessableEntity(exc.message, field=exc.field) from exc


# The names msgspec gives JSON types in its errors, so a mistyped amount reads as it did.
_JSON_TYPES: dict[type, str] = {type(None): "null", bool: "bool", list: "array", dict: "object"}


def _amount(value: Any, field: str, expected: str) -> Decimal:
    """``value`` as an amount, refused in msgspec's words when it is not a string or number."""
    if isinstance(value, bool) or not isinstance(value, MoneyInput):
        got = _JSON_TYPES.get(type(value), type(value).__name__)
        raise TypeError(f"`{field}` Expected `{expected}`, got `{got}`")
    with _as_invalid_field():
        return parse_amount(value, field=field)


@contextmanager
def _as_invalid_field() -> Iterator[None]:
    """A domain refusal inside ``__post_init__`` as the ValueError msgspec reports under the
    item's path; shared/http/errors.py reads the field's name from the leading backticks."""
    try:
        yield
    except OrderRuleError as exc:
        raise ValueError(f"`{exc.field}` {exc.message}") from exc
