"""A run's own names, and its settings as the environment its processes read.

Every name a run writes under carries ``<kind>`` and the run id, so runs share the machine's
PostgreSQL, Redis and RabbitMQ without touching each other's data, and a cleanup can find
exactly what one run made.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import msgspec
from sqlalchemy.engine import make_url

from shared.settings import Settings, load_api_settings

ROOT = Path(__file__).resolve().parents[2]


def isolated(settings: Settings, run_id: str, kind: str) -> Settings:
    """``settings`` with a database, Redis prefix, exchange, queues and arq queue of the run's."""
    database_url = make_url(settings.database_url).set(database=f"orders_{kind}_{run_id}")
    return msgspec.structs.replace(
        settings,
        database_url=database_url.render_as_string(hide_password=False),
        redis_prefix=f"{kind}:{run_id}:",
        rabbitmq_exchange=f"orders.{kind}.{run_id}",
        rabbitmq_queue=f"new_order.{kind}.{run_id}",
        # Under the prefix: the Redis users of deploy/redis-users.sh reach it as their own key.
        arq_queue=f"{kind}:{run_id}:arq:queue",
    )


def local_settings() -> Settings:
    """The developer's settings (.env and the environment): the servers' addresses."""
    return load_api_settings({"ENVIRONMENT": "development", **os.environ}, env_file=ROOT / ".env")


def environment(settings: Settings, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (this process's environment) with ``settings`` as ``load_settings`` reads them.

    A setting that is None is removed, so an inherited value cannot stand in for it; booleans
    are written as ``true``/``false``; output is unbuffered, so a killed process's log is whole.
    """
    env = dict(os.environ if base is None else base)
    for name in Settings.__struct_fields__:
        value = getattr(settings, name)
        if value is None:
            env.pop(name.upper(), None)
        elif isinstance(value, bool):
            env[name.upper()] = "true" if value else "false"
        else:
            env[name.upper()] = str(value)
    env["PYTHONUNBUFFERED"] = "1"
    return env
