"""``Prepared`` against the real PostgreSQL: the same rows as ``conn.execute``, SQLAlchemy's
errors, a lost connection invalidated (so the pool never hands it out again), and a
transaction left to SQLAlchemy. These are the behaviours of SQLAlchemy 2.1's asyncpg dialect
that ``shared.db`` reproduces: an upgrade that changes them fails here."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import bindparam, func, insert, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.db import Database, Prepared, create_engine, is_connection_lost
from shared.models import Order, User
from shared.orders.queries import ORDER_VIEW_COLUMNS
from shared.orders.status import OrderStatus
from shared.orders.view import order_view
from shared.settings import Settings

_OWN = Prepared(
    select(*ORDER_VIEW_COLUMNS).where(
        Order.id == bindparam("order_id"), Order.user_id == bindparam("user_id")
    )
)
_NEW = Prepared(
    select(
        func.count().label("made")  # an INSERT in a CTE, as POST /orders does
    ).select_from(
        insert(Order)
        .values(
            id=bindparam("id", type_=Order.id.type),
            user_id=bindparam("user_id", type_=Order.user_id.type),
            items=bindparam("items", type_=Order.items.type),
            total_price=Decimal("1.00"),
            status=OrderStatus.PENDING,
        )
        .returning(Order.id)
        .cte("inserted")
    )
)
_BACKEND_PID = Prepared(select(func.pg_backend_pid().label("pid")))


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    database = Database(create_engine(settings))
    try:
        yield database
    finally:
        await database.dispose()


async def _one(statement: Prepared, conn: AsyncConnection, params: dict[str, Any]) -> Any:
    row = await statement.one_or_none(conn, params)
    assert row is not None
    return row


async def _user(db: Database) -> int:
    async with db.connect() as conn:
        email = f"prepared-{uuid.uuid4().hex}@example.com"
        made = insert(User).values(email=email, password_hash=b"x" * 60).returning(User.id)
        return int((await conn.execute(made)).scalar_one())


async def _order(db: Database, user_id: int) -> uuid.UUID:
    order_id = uuid.uuid4()
    items = [{"name": "a", "quantity": 1, "price": "1.00"}]
    params = {"id": order_id, "user_id": user_id, "items": items}
    async with db.connect() as conn:
        assert (await _one(_NEW, conn, params)).made == 1
    return order_id


async def test_rows_carry_what_conn_execute_gives_and_the_same_view(db: Database) -> None:
    user_id = await _user(db)
    order_id = await _order(db, user_id)
    params = {"order_id": order_id, "user_id": user_id}
    async with db.connect() as conn:
        row = await _OWN.one_or_none(conn, params)
        through_sqlalchemy = (await conn.execute(_OWN.statement, params)).one()
    assert row is not None
    assert row._fields == tuple(through_sqlalchemy._fields)
    assert row.status == "PENDING"  # the driver's text; SQLAlchemy's row has the enum
    assert tuple(row) == tuple(through_sqlalchemy)
    assert row.created_at.tzinfo is not None
    assert order_view(row) == order_view(through_sqlalchemy)
    async with db.connect() as conn:
        assert await _OWN.one_or_none(conn, {"order_id": uuid.uuid4(), "user_id": user_id}) is None


async def test_in_a_transaction_the_statement_is_part_of_it(db: Database) -> None:
    user_id = await _user(db)
    order_id = uuid.uuid4()
    params = {"id": order_id, "user_id": user_id, "items": []}

    class Undo(Exception):
        pass

    async def insert_then_fail() -> None:
        async with db.begin() as conn:
            await _NEW.all(conn, params)
            raise Undo

    with pytest.raises(Undo):
        await insert_then_fail()
    async with db.connect() as conn:
        assert await _OWN.one_or_none(conn, {"order_id": order_id, "user_id": user_id}) is None


async def test_a_constraint_violation_is_sqlalchemys_integrity_error(db: Database) -> None:
    params = {"id": uuid.uuid4(), "user_id": 2_000_000_000, "items": []}  # no such user
    async with db.connect() as conn:
        with pytest.raises(IntegrityError) as caught:
            await _NEW.all(conn, params)
        assert not caught.value.connection_invalidated
        assert getattr(caught.value.orig, "sqlstate", None) == "23503"
        assert not is_connection_lost(caught.value)
        # The connection is still good for the next statement.
        assert (await _BACKEND_PID.one_or_none(conn, {})) is not None


async def test_a_lost_connection_is_invalidated_and_reads_as_lost(db: Database) -> None:
    async with db.connect() as conn:
        first = (await _one(_BACKEND_PID, conn, {})).pid
        async with db.connect() as other:
            await other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
        with pytest.raises(DBAPIError) as caught:
            await _BACKEND_PID.one_or_none(conn, {})
        assert caught.value.connection_invalidated
        assert is_connection_lost(caught.value)
        assert conn.invalidated
    # The pool makes a new connection rather than hand out the dead one.
    for _ in range(3):
        async with db.connect() as conn:
            assert (await _one(_BACKEND_PID, conn, {})).pid != first


async def test_a_naive_time_is_refused_before_anything_is_sent(db: Database) -> None:
    statement = Prepared(
        select(Order.id).where(Order.created_at < bindparam("t", type_=Order.created_at.type))
    )
    async with db.connect() as conn:
        with pytest.raises(TypeError):
            await statement.all(conn, {"t": datetime(2026, 1, 1)})
        assert await statement.all(conn, {"t": datetime(2000, 1, 1, tzinfo=UTC)}) == []
