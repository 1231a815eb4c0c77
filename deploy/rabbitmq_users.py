"""One RabbitMQ user per process kind, each allowed only what it does (least privilege).

Every process declares the topology of ``shared/messaging/bus.py`` at start, which takes:
configure on
those five names; for each binding, read on the exchange and write on the queue; and, as
``new_order`` and ``<queue>.sse`` (the event logs' feed) dead-letter to ``<exchange>.dlx``,
read on them and write on the ``.dlx`` exchange (RabbitMQ's check for a queue declared with a
dead-letter exchange). Beyond that:

- ``api`` and ``worker`` publish ``new_order`` events (the worker's outbox sweeper too):
  write on the exchange. The read on ``new_order`` that declaring it takes would let them
  consume it too: declaring only the exchange in the publishers would remove that;
- ``consumer`` reads ``new_order`` and ``<queue>.sse`` and cannot publish to the exchange
  (dead-lettering is done by the broker);
- nobody reads the dead-letter queue ``<queue>.dead``: that is for an operator.

docker-compose.yml's one-shot ``rabbitmq-users`` service runs this file with the app image to
create or update the users through the management API (``python /deploy/rabbitmq_users.py``);
``just docker-smoke`` applies the same ``permissions`` with ``rabbitmqctl`` to a shared broker,
so the containers it starts prove that these rules are enough.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import NamedTuple

ROLES = ("api", "consumer", "worker")


class Permission(NamedTuple):
    """RabbitMQ's three regular expressions over resource names."""

    configure: str
    write: str
    read: str


def permissions(exchange: str, queue: str) -> dict[str, Permission]:
    """What each role may do, for the names of ``shared.messaging.bus.Topology``."""

    def only(*names: str) -> str:
        return "^(" + "|".join(re.escape(name) for name in names) + ")$"

    dead_exchange, dead_queue = f"{exchange}.dlx", f"{queue}.dead"
    feed_queue = f"{queue}.sse"  # the event logs' feed: every event, read by the consumer
    topology = only(exchange, dead_exchange, queue, dead_queue, feed_queue)
    # bindings' exchanges; the DLX check (new_order and the feed dead-letter)
    declare_read = (exchange, dead_exchange, queue, feed_queue)
    declare_write = (queue, dead_queue, dead_exchange, feed_queue)  # bindings' queues; DLX
    publisher = Permission(
        configure=topology, write=only(exchange, *declare_write), read=only(*declare_read)
    )
    return {
        "api": publisher,
        "consumer": Permission(
            configure=topology, write=only(*declare_write), read=only(*declare_read)
        ),
        "worker": publisher,
    }


def _request(base: str, auth: str, method: str, path: str, body: object | None = None) -> None:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(  # noqa: S310 - the management API of our own broker
        base + path,
        data=data,
        method=method,
        headers={"Authorization": f"Basic {auth}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10):  # noqa: S310
        pass


def apply_over_http(env: dict[str, str]) -> None:
    """Create or update the users and their permissions (idempotent: run at every start)."""
    base = env.get("RABBITMQ_MANAGEMENT_URL", "http://rabbitmq:15672")
    admin = f"{env['RABBITMQ_ADMIN_USER']}:{env['RABBITMQ_ADMIN_PASSWORD']}"
    auth = base64.b64encode(admin.encode()).decode()
    vhost = urllib.parse.quote(env.get("RABBITMQ_VHOST", "/"), safe="")
    rules = permissions(
        env.get("RABBITMQ_EXCHANGE", "orders"), env.get("RABBITMQ_QUEUE", "new_order")
    )
    for role, rule in rules.items():
        password = env[f"RABBITMQ_{role.upper()}_PASSWORD"]
        if not password:
            raise SystemExit(f"RABBITMQ_{role.upper()}_PASSWORD is empty")
        _request(base, auth, "PUT", f"/api/users/{role}", {"password": password, "tags": ""})
        _request(base, auth, "PUT", f"/api/permissions/{vhost}/{role}", rule._asdict())
        print(
            f"rabbitmq user {role}: configure {rule.configure} write {rule.write} read {rule.read}"
        )


def main() -> None:
    # The broker's healthcheck passes before its management API listens: retry for a while.
    deadline = time.monotonic() + 60
    while True:
        try:
            apply_over_http(dict(os.environ))
        except urllib.error.HTTPError as exc:  # the broker answered: retrying will not help
            raise SystemExit(f"rabbitmq management API: {exc}") from exc
        except OSError as exc:  # not listening yet (URLError is an OSError)
            if time.monotonic() > deadline:
                raise SystemExit(f"rabbitmq management API: {exc}") from exc
            time.sleep(2)
        else:
            return


if __name__ == "__main__":
    main()
