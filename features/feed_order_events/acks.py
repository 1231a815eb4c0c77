"""One ack frame for a batch where that is provably safe, one per delivery otherwise.

AMQP's ``basic.ack`` with ``multiple`` settles every unsettled delivery of the channel up to
its tag. That is only right when every delivery below it was settled already or is in the
batch: not for one still being handled, held (a store down, the process stopping), or
rejected in a frame the broker has not had yet. ``SettledTags`` is that bookkeeping, per
channel (delivery tags count from 1 on each channel, and a reconnected one starts again).
The feed has a channel of its own (workers/consumer.py), so no other queue's deliveries are
below its tags.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aio_pika.abc import AbstractIncomingMessage

from shared.messaging.consuming import settle


class SettledTags:
    """The delivery tags of one channel settled so far: all through ``through``, and
    ``above`` (settled out of turn)."""

    def __init__(self) -> None:
        self.through = 0
        self._above: set[int] = set()

    def multiple_through(self, tags: Sequence[int]) -> int | None:
        """The tag to ack with ``multiple`` so that exactly ``tags`` are settled by it; None
        if some delivery below their highest is neither settled nor among them."""
        if not tags:
            return None
        last = max(tags)
        wanted = set(tags)
        if len(wanted) != len(tags) or min(wanted) <= self.through or wanted & self._above:
            return None
        unsettled = last - self.through - sum(1 for tag in self._above if tag < last)
        return last if unsettled == len(wanted) else None

    def add(self, tags: Sequence[int]) -> None:
        self._above.update(tags)
        while self.through + 1 in self._above:
            self.through += 1
            self._above.discard(self.through)


class BatchAcks:
    """Acks batches of one consumer, and hears of its other settlements (rejects)."""

    def __init__(self) -> None:
        self._channels: dict[object, SettledTags] = {}

    def _settled(self, channel: object) -> SettledTags:
        settled = self._channels.get(channel)
        if settled is None:  # a new channel (a reconnect): forget the closed ones
            self._channels = {
                c: s for c, s in self._channels.items() if not getattr(c, "is_closed", True)
            }
            settled = self._channels[channel] = SettledTags()
        return settled

    def settled(self, message: AbstractIncomingMessage) -> None:
        """``message`` was settled on its own (rejected, or acked singly)."""
        if message.delivery_tag is not None:
            self._settled(message.channel).add([message.delivery_tag])

    async def ack(self, messages: Sequence[AbstractIncomingMessage]) -> list[bool]:
        """Ack ``messages`` (in one frame per channel where safe); per message, whether the
        broker has its ack (False: the channel is gone, the broker redelivers it)."""
        groups: dict[object, list[int]] = {}
        for index, message in enumerate(messages):
            groups.setdefault(message.channel, []).append(index)
        done = [False] * len(messages)
        for channel, indexes in groups.items():
            settled = self._settled(channel)
            tags = [messages[i].delivery_tag for i in indexes]
            last = settled.multiple_through([t for t in tags if t is not None])
            if last is not None and None not in tags:
                newest = messages[indexes[tags.index(last)]]
                ok = await settle(newest.ack(multiple=True), newest)
                for i in indexes:
                    done[i] = ok
            else:
                oks = await asyncio.gather(
                    *(settle(messages[i].ack(), messages[i]) for i in indexes)
                )
                for i, ok in zip(indexes, oks, strict=True):
                    done[i] = ok
            settled.add(
                [t for t, i in zip(tags, indexes, strict=True) if t is not None and done[i]]
            )
        return done
