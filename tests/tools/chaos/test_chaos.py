"""The chaos run's own safety and bookkeeping (the run itself is ``just chaos``, not a test).

Its Redis data loss must delete only the run's keys: other runs share the Redis. Its count
of double processing must tell an effective run from a rerun that found the order done.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime
from pathlib import Path

from shared.messaging.events import OrderStatusChangedEvent
from shared.orders.status import OrderStatus
from shared.redis import create_redis
from shared.settings import Settings
from tests.apps import with_settings
from tools.chaos.checks import log_counts
from tools.chaos.status_events import judge
from tools.harness.cleanup import forget_redis_data


async def test_losing_redis_data_deletes_the_runs_keys_and_nothing_else(
    settings: Settings,
) -> None:
    tag = secrets.token_hex(3)
    run = with_settings(
        settings,
        redis_prefix=f"{settings.redis_prefix}chaos-{tag}:",
        arq_queue=f"{settings.redis_prefix}chaos-{tag}:arq:queue",
    )
    ours, theirs = str(uuid.uuid4()), str(uuid.uuid4())
    mine = [
        f"{run.redis_prefix}order:{ours}",
        run.arq_queue,
        f"arq:job:process_order:{ours}",
        f"arq:result:process_order:{ours}",
        f"arq:in-progress:process_order:{ours}",
        f"arq:job:cron:sweep_outbox:{run.arq_queue}:1700000000000",
    ]
    others = [
        f"{settings.redis_prefix}other-{tag}:order:{theirs}",
        f"arq:job:process_order:{theirs}",
        f"arq:job:cron:sweep_outbox:{settings.redis_prefix}other-{tag}:arq:queue:1700000000000",
    ]
    redis = create_redis(settings.redis_url)
    for key in mine + others:
        await redis.set(key, b"x", ex=60)
    try:
        deleted = await forget_redis_data(run, {ours})

        assert deleted == len(mine)
        assert await redis.exists(*mine) == 0
        assert await redis.exists(*others) == len(others)
    finally:
        await redis.delete(*mine, *others)
        await redis.aclose()


def test_only_a_run_that_changed_the_order_counts_as_processing_it(tmp_path: Path) -> None:
    once, twice = str(uuid.uuid4()), str(uuid.uuid4())
    (tmp_path / "worker-1.1.log").write_text(
        f"12:00:00 INFO    workers.worker: Order {once} processed {{'order_id': '{once}'}}\n"
        f"12:00:01 INFO    workers.worker: Order {twice} processed {{'order_id': '{twice}'}}\n"
    )
    (tmp_path / "worker-2.1.log").write_text(
        f"12:00:02 INFO    workers.worker: Order {once} was already processed\n"
        f"12:00:03 INFO    workers.worker: Order {twice} processed\n"
    )

    processed, reruns = log_counts(sorted(tmp_path.glob("worker-*.log")))

    assert processed == {once: 1, twice: 2}
    assert reruns == 1


def status_change(
    order_id: str, move: str, event_id: uuid.UUID | None = None
) -> OrderStatusChangedEvent:
    source, target = move.split(">")
    now = datetime.now(UTC)
    return OrderStatusChangedEvent(
        event_id=event_id or uuid.uuid4(),
        occurred_at=now,
        order_id=uuid.UUID(order_id),
        user_id=1,
        from_=OrderStatus(source),
        to=OrderStatus(target),
        updated_at=now,
    )


def test_each_status_change_must_have_exactly_one_event() -> None:
    """The chaos run's bus check: one event per move, a chain from PENDING to the final
    status; the same event delivered twice is at-least-once, not a failure."""
    still, paid, shipped, doubled, missing, stray = (str(uuid.uuid4()) for _ in range(6))
    again = uuid.uuid4()
    events = [
        status_change(paid, "PENDING>PAID", again),
        status_change(paid, "PENDING>PAID", again),  # redelivered: same event_id
        status_change(shipped, "PENDING>PAID"),
        status_change(shipped, "PAID>SHIPPED"),
        status_change(doubled, "PENDING>CANCELED"),
        status_change(doubled, "PENDING>CANCELED"),  # one move, two events
        status_change(missing, "PENDING>PAID"),  # ends SHIPPED: PAID>SHIPPED has no event
        status_change(stray, "PENDING>PAID"),  # no such order
    ]
    final = {
        still: "PENDING",
        paid: "PAID",
        shipped: "SHIPPED",
        doubled: "CANCELED",
        missing: "SHIPPED",
    }
    result = judge(events, final)
    assert (result.received, result.redelivered, result.orders_changed) == (8, 1, 4)
    assert result.doubled == [doubled]
    assert sorted(result.broken) == sorted([missing, stray])
    assert len(result.failures()) == 2
    assert judge([], {still: "PENDING"}).failures() == []
