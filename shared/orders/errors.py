"""The one error the orders domain raises: a broken rule, with the field it concerns.

Plain Python, so the domain knows nothing of HTTP; each slice turns it into the answer its
clients expect (a 422 naming the field, a 409 naming the current status).
"""

from __future__ import annotations

# What a client hears of an order that does not exist or is not theirs: the same words, so
# that another user's order is indistinguishable from a missing one.
ORDER_NOT_FOUND = "order not found"


class OrderRuleError(Exception):
    """``field`` is the API's name for what broke the rule; ``message`` says how."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
