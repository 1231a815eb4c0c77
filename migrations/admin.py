"""The database's admin tasks: create and drop it, upgrade it, grant the app's role.

Run by the owner, never by the app: ``python -m migrations``, the tests' fixtures and the
tools call them. They speak asyncpg directly (``CREATE DATABASE`` cannot run in a
transaction, and takes no bind parameters).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import asyncpg
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url

from shared.db import CONNECT_TIMEOUT_S, asyncpg_dsn

PROJECT_ROOT = Path(__file__).resolve().parent.parent


async def ensure_database(database_url: str) -> bool:
    """Create the database named in the URL if it is missing; True when it was created."""
    name = make_url(database_url).database
    if not name:
        raise ValueError("DATABASE_URL names no database")
    conn = await asyncpg.connect(asyncpg_dsn(database_url, "postgres"), timeout=CONNECT_TIMEOUT_S)
    try:
        if await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            return False
        # CREATE DATABASE takes no bind parameters; quote_ident makes the name safe.
        quoted = await conn.fetchval("SELECT quote_ident($1)", name)
        await conn.execute(f"CREATE DATABASE {quoted}")
        return True
    finally:
        await conn.close()


async def drop_database(database_url: str) -> None:
    name = make_url(database_url).database
    conn = await asyncpg.connect(asyncpg_dsn(database_url, "postgres"), timeout=CONNECT_TIMEOUT_S)
    try:
        quoted = await conn.fetchval("SELECT quote_ident($1)", name)
        await conn.execute(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")
    finally:
        await conn.close()


# The app's rights: rows of its tables, and the sequences behind their ids; nothing else.
_APP_ROLE_STATEMENTS = (
    "ALTER ROLE {role} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION"
    " NOBYPASSRLS PASSWORD {password}",
    "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
    "REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}",
    "GRANT CONNECT ON DATABASE {database} TO {role}",
    "GRANT USAGE ON SCHEMA public TO {role}",
    "GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role}",
    "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public"
    " GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role}",
    "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public GRANT USAGE ON SEQUENCES TO {role}",
)
MIGRATIONS_TABLE = "alembic_version"


async def grant_app_role(database_url: str, role: str, password: str) -> None:
    """Create or update the login role the processes use: read and write the app's rows only.

    Run by the owner after the migrations. Default privileges cover tables that later
    migrations create (as the same owner); Alembic's own table stays out of reach.
    """
    conn = await asyncpg.connect(asyncpg_dsn(database_url), timeout=CONNECT_TIMEOUT_S)
    try:
        owner = await conn.fetchval("SELECT current_user")
        if role == owner:
            raise ValueError("DB_APP_ROLE must not be the role that owns and migrates the database")
        # Identifiers and literals cannot be bind parameters here; format() quotes them.
        quoted = {
            "role": await conn.fetchval("SELECT quote_ident($1)", role),
            "owner": await conn.fetchval("SELECT quote_ident($1)", owner),
            "database": await conn.fetchval("SELECT quote_ident(current_database())"),
            "password": await conn.fetchval(
                "SELECT coalesce(quote_literal(nullif($1, '')), 'NULL')", password
            ),
        }
        tables = await conn.fetch(
            "SELECT quote_ident(tablename) AS name FROM pg_tables"
            " WHERE schemaname = 'public' AND tablename <> $1",
            MIGRATIONS_TABLE,
        )
        async with conn.transaction():
            if not await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role):
                await conn.execute(f"CREATE ROLE {quoted['role']}")
            for statement in _APP_ROLE_STATEMENTS:
                await conn.execute(statement.format(**quoted))
            for table in tables:
                await conn.execute(
                    f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table['name']} TO {quoted['role']}"
                )
    finally:
        await conn.close()


def migrate(database_url: str, revision: str = "head") -> None:
    """Create the database if missing and upgrade it; synchronous, as Alembic runs its own loop."""
    asyncio.run(ensure_database(database_url))
    cfg = Config(str(PROJECT_ROOT / "alembic.ini"))
    cfg.attributes["database_url"] = database_url
    command.upgrade(cfg, revision)


def in_scratch_database(database_url: str, run: Callable[[str], Coroutine[Any, Any, None]]) -> None:
    """Run ``run(url)`` on a migrated ``<database>_explain_<hex>`` beside ``database_url``'s,
    dropped afterwards whatever happens: the explain tools fill it without touching real data."""
    url = make_url(database_url)
    scratch = url.set(database=f"{url.database}_explain_{secrets.token_hex(3)}")
    scratch_url = scratch.render_as_string(hide_password=False)
    migrate(scratch_url)
    try:
        asyncio.run(run(scratch_url))
    finally:
        asyncio.run(drop_database(scratch_url))
