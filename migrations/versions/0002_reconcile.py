"""The reconciler's bookkeeping and indexes: orders left unprocessed are found cheaply.

Revision ID: 0002_reconcile
Revises: 0001
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import advanced_alchemy.types
import sqlalchemy as sa
from alembic import op

revision: str = "0002_reconcile"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC = advanced_alchemy.types.DateTimeUTC(timezone=True)


def upgrade() -> None:
    # How often the reconciler re-enqueued the order's job, and when it looks at it next.
    op.add_column(
        "orders",
        sa.Column("reconcile_attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
    )
    op.add_column("orders", sa.Column("reconcile_next_at", UTC, nullable=True))
    # Holds only the orders not processed yet (a few seconds' worth in steady state), so the
    # reconciler's scan costs the same with 200 or 200 million orders.
    op.create_index(
        "ix_orders_unprocessed",
        "orders",
        ["created_at", "reconcile_next_at"],
        postgresql_where=sa.text("processed_at IS NULL"),
    )
    # "Is this order's event still unsent?" per candidate, without scanning the backlog.
    op.create_index(
        "ix_outbox_unsent_order_id",
        "outbox",
        ["order_id"],
        postgresql_where=sa.text("sent_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_unsent_order_id", table_name="outbox")
    op.drop_index("ix_orders_unprocessed", table_name="orders")
    op.drop_column("orders", "reconcile_next_at")
    op.drop_column("orders", "reconcile_attempts")
