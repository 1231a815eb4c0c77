"""Alembic's migrations, and the database's admin tasks (``migrations.admin``)."""
