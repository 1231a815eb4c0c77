"""`python -m migrations`: create the database if it is missing, then upgrade it to head."""

from shared.database import migrate
from shared.settings import load_settings

if __name__ == "__main__":
    migrate(load_settings().database_url)
    print("database is at head")
