"""Migration 0005_normalise_emails: stored emails move to the normal form, unless that would
take another account's address or IDNA refuses the domain. A real database of its own."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Iterator

import asyncpg
import bcrypt
import pytest
from sqlalchemy.engine import make_url

from migrations.admin import drop_database, migrate
from shared.accounts.credentials import normalize_email
from shared.db import asyncpg_dsn
from shared.settings import Settings

BEFORE = "0004_sessions"
HASH = bcrypt.hashpw(b"password123", bcrypt.gensalt(4))

# As the older code stored them: trimmed and lower-cased only.
STORED = {
    "full-width": "\uff45ve-mig@x.io",  # ｅ: the look-alike of a plain address nobody has
    "idn": "ada@b\u00fccher.example",
    "collides": "\uff42ob@x.io",  # ｂ, while bob@x.io is another account's
    "taken": "bob@x.io",
    "refused": "z\u00f6e@exa_mple.com",  # IDNA refuses the domain: no normal form
    "plain": "carol@example.com",
}


async def _insert(url: str) -> dict[str, int]:
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return {
            name: await connection.fetchval(
                "INSERT INTO users (email, password_hash) VALUES ($1, $2) RETURNING id",
                email,
                HASH,
            )
            for name, email in STORED.items()
        }
    finally:
        await connection.close()


async def _emails(url: str) -> dict[int, str]:
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return {row["id"]: row["email"] for row in await connection.fetch("SELECT * FROM users")}
    finally:
        await connection.close()


@pytest.fixture
def database_url(settings: Settings) -> Iterator[str]:
    url = make_url(settings.database_url).set(database=f"orders_mig_{secrets.token_hex(4)}")
    rendered = url.render_as_string(hide_password=False)
    yield rendered
    asyncio.run(drop_database(rendered))


def test_stored_emails_move_to_their_normal_form_unless_taken_or_refused(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    migrate(database_url, BEFORE)
    ids = asyncio.run(_insert(database_url))

    with caplog.at_level(logging.WARNING):
        migrate(database_url)

    emails = asyncio.run(_emails(database_url))
    assert emails[ids["full-width"]] == "eve-mig@x.io"
    assert emails[ids["idn"]] == "ada@xn--bcher-kva.example"
    assert emails[ids["collides"]] == STORED["collides"]  # kept: bob@x.io is taken
    assert emails[ids["taken"]] == "bob@x.io"
    assert emails[ids["refused"]] == STORED["refused"]
    assert emails[ids["plain"]] == "carol@example.com"
    # Each migrated or kept row is what a login with the address as typed looks up.
    for typed, name in [
        ("\uff25VE-mig@x.io", "full-width"),
        ("eve-mig@x.io", "full-width"),
        ("Ada@B\u00dcCHER.example", "idn"),
        ("ada@xn--bcher-kva.example", "idn"),
        ("Z\u00d6E@exa_mple.com", "refused"),
    ]:
        assert normalize_email(typed) == emails[ids[name]], typed
    # The collision is logged by id, without the address.
    assert str(ids["collides"]) in caplog.text
    assert STORED["collides"] not in caplog.text
