"""Stored emails in their normal form (issue 18): NFKC, lower-cased, the domain by IDNA.

Before, an address was only trimmed and lower-cased. A login is now looked up under the
normal form (shared.accounts.credentials), so a stored address that the normal form changes would no
longer be found. Only addresses with a non-ASCII character can change (on ASCII text NFKC
and lower-casing are no-ops, and IDNA keeps a valid lower-case ASCII domain as it is).

Each such row is renormalised in id order, unless:
- IDNA refuses its domain: the row stays as it is, and a login still finds it, since
  ``normalize_email`` keeps the older form for text without a normal form;
- its normal form is already another row's address (two accounts that were look-alikes):
  the row stays as it is, and its owner must be helped by hand (a login with either
  spelling now reaches the other account). The ids are logged, never the addresses.
Downgrade changes nothing: the older code lower-cases what it is given, so a user typing the
normal form still finds the row.

Revision ID: 0005_normalise_emails
Revises: 0004_sessions
Create Date: 2026-12-06
"""

import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.accounts.credentials import EmailRefused, registrable_email

revision: str = "0005_normalise_emails"
down_revision: str | None = "0004_sessions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

logger = logging.getLogger(__name__)

_NON_ASCII = sa.text(
    "SELECT id, email FROM users WHERE octet_length(email) <> char_length(email) ORDER BY id"
)
# One statement: the check for a colliding address and the update cannot be told apart.
_RENORMALISE = sa.text(
    "UPDATE users SET email = :normal WHERE id = :id"
    " AND NOT EXISTS (SELECT 1 FROM users WHERE email = :normal)"
)


def upgrade() -> None:
    connection = op.get_bind()
    kept: list[int] = []
    for row in connection.execute(_NON_ASCII).all():
        try:
            normal = registrable_email(row.email)
        except EmailRefused:
            continue  # no normal form: logins keep finding the row as it is
        if normal == row.email:
            continue
        if connection.execute(_RENORMALISE, {"normal": normal, "id": row.id}).rowcount == 0:
            kept.append(row.id)
    if kept:
        logger.warning(
            "users %s kept their stored email: its normal form is another account's", kept
        )


def downgrade() -> None:
    """Nothing to undo: the normal form is one the older code looks up too."""
