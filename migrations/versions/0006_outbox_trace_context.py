"""The outbox row's trace context (issue 21): the W3C ``traceparent``/``tracestate`` of the
change that staged it, so whoever publishes the row later (the relay, the sweeper) continues
that trace in the message's headers. NULL when tracing is off or the row is older.

Revision ID: 0006_outbox_trace_context
Revises: 0005_normalise_emails
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006_outbox_trace_context"
down_revision: str | None = "0005_normalise_emails"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable, no default: a catalog-only change, no table rewrite, no long lock.
    op.add_column("outbox", sa.Column("trace_context", postgresql.JSONB(), nullable=True))
    # The reconciler's look-up of an order's original trace (features/reconcile_orders/):
    # empty while tracing is off (every row is NULL), one entry per traced order otherwise.
    op.create_index(
        "ix_outbox_traced_new_order",
        "outbox",
        ["order_id"],
        postgresql_where=sa.text("event_type = 'new_order' AND trace_context IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_traced_new_order", table_name="outbox")
    op.drop_column("outbox", "trace_context")
