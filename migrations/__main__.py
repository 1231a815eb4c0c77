"""`python -m migrations`: create the database if it is missing, upgrade it to head, and (with
DB_APP_ROLE set) create or update the least-privileged role the processes connect as."""

import asyncio

from migrations.admin import grant_app_role, migrate
from shared.settings import load_settings

if __name__ == "__main__":
    settings = load_settings()
    migrate(settings.database_url)
    print("database is at head")
    if settings.db_app_role:
        asyncio.run(
            grant_app_role(settings.database_url, settings.db_app_role, settings.db_app_password)
        )
        print(f"role {settings.db_app_role} may read and write the app's tables, nothing more")
