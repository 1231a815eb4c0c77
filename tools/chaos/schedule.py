"""The fault schedule: two lanes at once, each striking every few seconds until the end.

- the process lane SIGKILLs a random process (API, consumer or worker) and starts it again
  a moment later;
- the link lane cuts (resets the live connections), stalls (nothing gets through, for a few
  seconds) or takes down (refuses and resets, for a few seconds) the link to PostgreSQL,
  Redis or RabbitMQ, then restores it;
- once, at ``redis_loss_at`` of the way, Redis "restarts without persistence": its link goes
  down and the run's keys are deleted (``tools.harness.cleanup.forget_redis_data``), then
  the link returns.

Every fault in flight is undone before ``run_faults`` returns, and every process is running
again; ``FaultLog.ended`` is then the moment the last fault was over.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from tools.chaos.stack import Stack
from tools.harness.cleanup import forget_redis_data

PERIOD_S = (2.0, 5.0)
RESTART_AFTER_S = (0.3, 2.0)
HOLD_S = (1.0, 6.0)  # how long a stall or an outage lasts
LINK_FAULTS = ("cut", "stall", "down")

OrderIds = Callable[[], Awaitable[set[str]]]


@dataclass
class FaultLog:
    counts: Counter[str] = field(default_factory=Counter)
    timeline: list[str] = field(default_factory=list)
    not_restarted: list[str] = field(default_factory=list)
    redis_keys_lost: int = 0
    started: float = 0.0
    ended: float = 0.0

    def note(self, kind: str, detail: str = "") -> None:
        self.counts[kind] += 1
        at = time.monotonic() - self.started
        self.timeline.append(f"{at:7.1f}s  {kind}{f' ({detail})' if detail else ''}")


async def kill_lane(stack: Stack, log: FaultLog, until: float, rng: random.Random) -> None:
    while time.monotonic() < until:
        await asyncio.sleep(rng.uniform(*PERIOD_S))
        role = rng.choice(stack.roles)
        role.kill()
        log.note(f"kill -9 {role.name.split('-')[0]}", role.name)
        await asyncio.sleep(rng.uniform(*RESTART_AFTER_S))
        role.launch()
        if not await role.ready():
            log.not_restarted.append(f"{role.name}:\n{stack.tail(role)}")


async def link_lane(
    stack: Stack,
    log: FaultLog,
    until: float,
    rng: random.Random,
    redis_loss_at: float | None,
    order_ids: OrderIds,
) -> None:
    links = stack.links.all()
    while time.monotonic() < until:
        await asyncio.sleep(rng.uniform(*PERIOD_S))
        if redis_loss_at is not None and time.monotonic() >= redis_loss_at:
            redis_loss_at = None
            await lose_redis_data(stack, log, order_ids)
            continue
        name = rng.choice(list(links))
        fault = rng.choice(LINK_FAULTS)
        link = links[name]
        log.note(f"{fault} {name}")
        if fault == "cut":
            link.cut()
            continue
        if fault == "stall":
            link.stall()
        else:
            link.down()
        await asyncio.sleep(rng.uniform(*HOLD_S))
        link.restore()


async def lose_redis_data(stack: Stack, log: FaultLog, order_ids: OrderIds) -> None:
    """Redis restarts empty: down, the run's keys gone, back up (see ``forget_redis_data``)."""
    stack.links.redis.down()
    try:
        ids = await order_ids()
        log.redis_keys_lost += await forget_redis_data(stack.settings, ids)
        log.note("redis loses its data", f"{log.redis_keys_lost} keys of this run")
        await asyncio.sleep(1.0)
    finally:
        stack.links.redis.restore()


async def run_faults(
    stack: Stack,
    seconds: float,
    seed: int,
    order_ids: OrderIds,
    redis_loss_share: float | None = 0.4,
) -> FaultLog:
    log = FaultLog(started=time.monotonic())
    until = log.started + seconds
    loss_at = None if redis_loss_share is None else log.started + seconds * redis_loss_share
    try:
        await asyncio.gather(
            kill_lane(stack, log, until, random.Random(seed)),
            link_lane(stack, log, until, random.Random(seed + 1), loss_at, order_ids),
        )
    finally:
        stack.links.restore_all()
        log.not_restarted += await stack.revive()
        log.ended = time.monotonic()
    return log
