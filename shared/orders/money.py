"""Money: exact decimals with at most two places, never a float on the way.

A client may send an amount as a JSON string or a JSON number. Numbers reach us already
exact (``int`` or ``Decimal``: see shared/http/exact_json.py); strings are parsed here, by the
decimal grammar only.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from decimal import Decimal

import msgspec

from shared.orders.errors import OrderRuleError
from shared.orders.items import OrderItem

MAX_TOTAL = Decimal("99999999.99")  # orders.total_price is Numeric(10, 2)
CENT = Decimal("0.01")

# An amount as a client sends it: a JSON string, or a JSON number decoded exactly.
MoneyInput = str | int | Decimal

# The numeric-string grammar that the decimal module documents, in ASCII only: Python's
# Decimal() also takes "1_000", " 1 " and non-ASCII digits, which no client means as money.
# Infinity and NaN parse, so that the bounds refuse them with the message clients know.
_DECIMAL_STRING = re.compile(
    r"""
    [+-]?
    (?: (?: [0-9]+ (?: \.[0-9]* )? | \.[0-9]+ ) (?: e[+-]?[0-9]+ )?
      | inf (?: inity )?
      | s? nan [0-9]*
    )
    """,
    re.ASCII | re.IGNORECASE | re.VERBOSE,
)


def parse_amount(value: MoneyInput, *, field: str) -> Decimal:
    """The exact Decimal a client sent, or a refusal naming ``field``; no bounds yet."""
    if isinstance(value, str):
        if not _DECIMAL_STRING.fullmatch(value):
            raise OrderRuleError(field, "Invalid decimal string")
        return Decimal(value)
    # A bool is an int to Python, and a float has already lost the client's digits.
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise OrderRuleError(field, "must be a decimal number or a string of one")
    return Decimal(value)


def has_cents_at_most(value: Decimal) -> bool:
    exponent = value.as_tuple().exponent
    return value.is_finite() and isinstance(exponent, int) and exponent >= -2


def check_price(price: Decimal) -> Decimal:
    """A unit price: finite, above 0, whole cents, and no more than an order may total."""
    if not price.is_finite() or price <= 0:
        raise OrderRuleError("price", "must be a number greater than 0")
    if not has_cents_at_most(price):
        raise OrderRuleError("price", "must have at most 2 decimal places")
    if price > MAX_TOTAL:
        raise OrderRuleError("price", f"must not exceed {MAX_TOTAL}")
    return price


def computed_total(items: Sequence[OrderItem]) -> Decimal:
    return sum((item.price * item.quantity for item in items), Decimal("0"))


def checked_total(items: Sequence[OrderItem], sent: Decimal | None) -> Decimal:
    """Σ quantity × price; a sent total must equal it exactly; it must fit Numeric(10, 2)."""
    total = computed_total(items)
    # is_finite first: comparing a signalling NaN ("sNaN") raises instead of answering.
    if sent is not None and not (sent.is_finite() and sent == total):
        raise OrderRuleError(
            "total_price", f"total_price {sent} does not equal the sum of the items {total:.2f}"
        )
    if total > MAX_TOTAL:
        raise OrderRuleError("total_price", f"order total must not exceed {MAX_TOTAL}")
    return total.quantize(CENT)


def request_fingerprint(items: Sequence[OrderItem], total: Decimal) -> bytes:
    """Same order, same fingerprint: "1.5" and 1.50 as a price are one request."""
    canonical = msgspec.json.encode(
        {
            "items": [[i.name, i.quantity, str(i.price.normalize())] for i in items],
            "total": str(total.normalize()),
        }
    )
    return hashlib.sha256(canonical).digest()
