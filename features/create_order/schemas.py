"""POST /orders: the request, validated declaratively, and the rules that need the whole body."""

from __future__ import annotations

import hashlib
from decimal import Decimal
from typing import Annotated

import msgspec
from litestar.openapi.spec import OpenAPIType, Schema

from shared.errors import UnprocessableEntity
from shared.orders import CENT, MAX_TOTAL, OrderItem

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
    # A JSON number or string; msgspec parses either straight to Decimal, never via float.
    price: Annotated[
        Decimal,
        msgspec.Meta(
            examples=["100.50"],
            extra_json_schema=money_schema("greater than 0, at most 2 decimal places"),
        ),
    ]

    def __post_init__(self) -> None:
        if "\x00" in self.name:
            raise ValueError("`name` must not contain NUL characters")
        # msgspec cannot put bounds on Decimal, so they are checked here.
        if not self.price.is_finite() or self.price <= 0:
            raise ValueError("`price` must be a number greater than 0")
        if not has_cents_at_most(self.price):
            raise ValueError("`price` must have at most 2 decimal places")
        if self.price > MAX_TOTAL:
            raise ValueError(f"`price` must not exceed {MAX_TOTAL}")


class CreateOrderRequest(msgspec.Struct, frozen=True, kw_only=True):
    items: Annotated[list[NewItem], msgspec.Meta(min_length=1, max_length=100)]
    total_price: (
        Annotated[
            Decimal,
            msgspec.Meta(
                examples=["201.00"],  # the sum of the item example: 2 × 100.50
                extra_json_schema=money_schema(
                    "optional; if sent, must equal the sum of quantity × price", nullable=True
                ),
            ),
        ]
        | None
    ) = None


def has_cents_at_most(value: Decimal) -> bool:
    exponent = value.as_tuple().exponent
    return value.is_finite() and isinstance(exponent, int) and exponent >= -2


def computed_total(items: list[NewItem]) -> Decimal:
    return sum((item.price * item.quantity for item in items), Decimal("0"))


def order_items(items: list[NewItem]) -> list[OrderItem]:
    return [OrderItem(name=i.name, quantity=i.quantity, price=i.price) for i in items]


def request_fingerprint(items: list[OrderItem], total: Decimal) -> bytes:
    """Same order, same fingerprint: "1.5" and 1.50 as a price are one request."""
    canonical = msgspec.json.encode(
        {
            "items": [[i.name, i.quantity, str(i.price.normalize())] for i in items],
            "total": str(total.normalize()),
        }
    )
    return hashlib.sha256(canonical).digest()


def checked_total(request: CreateOrderRequest) -> Decimal:
    """Σ quantity × price; a sent total must equal it exactly; it must fit Numeric(10, 2)."""
    total = computed_total(request.items)
    if request.total_price is not None and request.total_price != total:
        raise UnprocessableEntity(
            f"total_price {request.total_price} does not equal the sum of the items {total:.2f}",
            field="total_price",
        )
    if total > MAX_TOTAL:
        raise UnprocessableEntity(f"order total must not exceed {MAX_TOTAL}", field="total_price")
    return total.quantize(CENT)
