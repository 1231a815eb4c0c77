"""``Prepared`` compiles a Core statement once: its ``$n`` order, its fixed values, its types'
bind processors, and what it refuses (no service needed: compiling only takes the dialect)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import bindparam, literal, select
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.engine import Dialect

from shared.db import Prepared
from shared.models import Order
from shared.orders.status import OrderStatus


@pytest.fixture
def dialect() -> Dialect:
    return PGDialect_asyncpg(paramstyle="numeric_dollar")  # type: ignore[no-untyped-call]


def test_each_name_is_one_dollar_parameter_in_the_order_of_the_sql(dialect: Dialect) -> None:
    at = bindparam("at", type_=Order.created_at.type)
    statement = Prepared(
        select(Order.id).where(
            Order.user_id == bindparam("owner"), Order.created_at >= at, Order.updated_at >= at
        )
    )
    statement._compile(dialect)
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    assert statement._sql.count("$1") == 1
    assert statement._sql.count("$2") == 2  # one value, bound once, used twice
    assert statement._args({"at": moment, "owner": 7}) == [7, moment]


def test_fixed_values_bind_themselves_and_types_process_what_is_given(dialect: Dialect) -> None:
    statement = Prepared(
        select(literal("new_order"), Order.id).where(
            Order.status == OrderStatus.PAID,
            Order.created_at < bindparam("before", type_=Order.created_at.type),
        )
    )
    statement._compile(dialect)
    args = statement._args({"before": datetime(2026, 1, 1, tzinfo=UTC)})
    assert args[0] == "new_order"
    assert type(args[1]) is str  # the enum's bind processor ran
    assert args[1] == "PAID"
    with pytest.raises(TypeError, match="tzinfo"):  # so did the UTC rule's
        statement._args({"before": datetime(2026, 1, 1)})


def test_a_missing_value_is_an_error_not_a_null(dialect: Dialect) -> None:
    statement = Prepared(select(Order.id).where(Order.id == bindparam("order_id")))
    statement._compile(dialect)
    assert statement._args({"order_id": (order_id := uuid.uuid4())}) == [order_id]
    with pytest.raises(KeyError):
        statement._args({})


def test_an_expanding_list_is_refused(dialect: Dialect) -> None:
    statement = Prepared(select(Order.id).where(Order.status.in_(bindparam("s", expanding=True))))
    with pytest.raises(ValueError, match="once"):
        statement._compile(dialect)
