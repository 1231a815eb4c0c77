"""The tables. Several slices and the workers share them, so they live here once.

Alembic's ``migrations/`` is the source of truth for the schema; these mappings mirror it
(``just check-migrations`` compares the two).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    TypeDecorator,
    Uuid,
    func,
    text,
)
from sqlalchemy import Enum as SAEnum
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# The domain owns the enum; the column stores its values. "as": still importable from here.
from shared.orders.status import OrderStatus as OrderStatus  # noqa: PLC0414


class Base(DeclarativeBase):
    """The tables' metadata, with the constraint names the migrations use.

    Plain SQLAlchemy rather than advanced-alchemy's ``DefaultBase`` (same naming
    convention): importing advanced-alchemy imports Litestar, and the workers, which import
    these models, must not.
    """

    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class DateTimeUTC(TypeDecorator[datetime]):
    """``timestamptz``, written only from aware datetimes (in UTC) and read back aware."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not value.tzinfo:
            raise TypeError("tzinfo is required")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[bytes] = mapped_column(LargeBinary(60))
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC, server_default=func.now())


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (
        # Serves "my orders, newest first" with an index scan and no sort.
        Index("ix_orders_user_id_created_at", "user_id", text("created_at DESC"), text("id DESC")),
        # One order per (user, Idempotency-Key); NULL keys are not constrained.
        Index(
            "uq_orders_user_id_idempotency_key",
            "user_id",
            "idempotency_key",
            unique=True,
            postgresql_where=text("idempotency_key IS NOT NULL"),
        ),
        # The reconciler's scan: only unprocessed orders are in it (features/reconcile_orders/).
        Index(
            "ix_orders_unprocessed",
            "created_at",
            "reconcile_next_at",
            postgresql_where=text("processed_at IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    user_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("users.id", ondelete="CASCADE"), index=False
    )
    items: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    total_price: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    status: Mapped[OrderStatus] = mapped_column(
        SAEnum(OrderStatus, name="order_status", values_callable=lambda e: [m.value for m in e]),
        default=OrderStatus.PENDING,
    )
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTimeUTC, server_default=func.now())
    processed_at: Mapped[datetime | None] = mapped_column(DateTimeUTC, nullable=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # SHA-256 of the canonical request body, to tell a retry from a different order.
    request_fingerprint: Mapped[bytes | None] = mapped_column(LargeBinary(32), nullable=True)
    # The reconciler's bookkeeping: re-enqueues so far, and when it looks at the order next.
    reconcile_attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    reconcile_next_at: Mapped[datetime | None] = mapped_column(DateTimeUTC, nullable=True)


class LoginSession(Base):
    """A session: one login and the refresh tokens descended from it (their ``family_id``).

    Its row is the session's lock: refresh, revoke, replay detection and account deletion
    each take it (``FOR UPDATE``) before they read or change the session's state, so they
    run one after the other per session.
    """

    __tablename__ = "sessions"
    __table_args__ = (
        # The purge's scans (features/purge_sessions/): ended sessions, oldest first.
        Index("ix_sessions_expires_at", "expires_at"),
        Index(
            "ix_sessions_revoked_at", "revoked_at", postgresql_where=text("revoked_at IS NOT NULL")
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    user_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    started_at: Mapped[datetime] = mapped_column(DateTimeUTC, server_default=func.now())
    # The absolute end, SESSION_MAX_DAYS after the login: no refresh token outlives it.
    expires_at: Mapped[datetime] = mapped_column(DateTimeUTC)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTimeUTC, nullable=True)


class RefreshToken(Base):
    """One refresh token as issued: only its SHA-256 hash, its session and whether it was used.

    Revoked or not, and whose, is the session's (``LoginSession``), not the token's: a token
    goes with its session, and a session with its user (ON DELETE CASCADE, one path only, so
    an account deletion and the session purge never lock the same rows in opposite orders).
    """

    __tablename__ = "refresh_tokens"

    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    family_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("sessions.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC, server_default=func.now())
    # Indexed for the purge of expired tokens.
    expires_at: Mapped[datetime] = mapped_column(DateTimeUTC, index=True)
    used_at: Mapped[datetime | None] = mapped_column(DateTimeUTC, nullable=True)


class OutboxEvent(Base):
    """An event committed with its order and published after the commit (transactional outbox)."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_unsent", "created_at", postgresql_where=text("sent_at IS NULL")),
        Index("ix_outbox_unsent_order_id", "order_id", postgresql_where=text("sent_at IS NULL")),
        # An order's original trace, for the reconciler; empty while tracing is off.
        Index(
            "ix_outbox_traced_new_order",
            "order_id",
            postgresql_where=text("event_type = 'new_order' AND trace_context IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    event_type: Mapped[str] = mapped_column(String(64))
    order_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC, server_default=func.now())
    sent_at: Mapped[datetime | None] = mapped_column(DateTimeUTC, nullable=True)
    attempts: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    # The staging change's W3C trace context (traceparent/tracestate), for the message's
    # headers (shared/tracing.py); NULL (not JSON null) when there was none.
    trace_context: Mapped[dict[str, str] | None] = mapped_column(
        JSONB(none_as_null=True), nullable=True
    )
