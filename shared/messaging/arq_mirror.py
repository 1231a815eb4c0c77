"""Every piece of code that reproduces arq's internals: read against arq ``ARQ_VERSION``.

arq's public API costs a few Redis round trips where one would do, so the hot paths re-do
some of its steps in Lua. Those steps depend on arq's key layout and its private worker
state, which arq may change in any release without notice; they live here, and only here,
so that an upgrade means re-reading this one file against arq's code
(tests/unit/test_arq_mirror.py fails until ``ARQ_VERSION`` is moved, by someone who did).
Each part says which arq behaviour it reproduces:

- **Key layout** (``arq.constants``): a job's record under ``arq:job:<id>``, its result under
  ``arq:result:<id>``, its running mark under ``arq:in-progress:<id>``; the queue is a sorted
  set of job ids scored by when they are due (ms). ``job_key`` and friends; no other product
  module spells a key (tests and the tools' clean-ups check or sweep them by name).
- **The records** (``arq.jobs.serialize_job`` / ``serialize_result``): ``JobRecord``, the
  dicts arq writes, field for field, so our JSON serializer can refuse anything else.
- **Enqueue** (``ArqRedis.enqueue_job``): no job and no result under the id, then the record
  (with arq's default lifetime, ``expires_extra_ms``) and the queue entry, atomically;
  ``enqueue_unique`` does it in one script where arq's WATCH/EXISTS/MULTI take three trips.
- **The worker's claim** (``Worker.start_jobs``): for each queued id, the semaphore and
  ``job_counter`` (arq's private ``sem``, ``job_counter``,
  ``_release_sem_dec_counter_on_complete``), then, atomically, "not in progress and due" →
  mark it in progress for ``in_progress_timeout_s`` and run it. ``BatchClaimWorker`` skips
  the jobs it already runs without asking Redis and claims the others by one script a batch.
- **The poll loop** (``Worker.main`` → ``_poll_iteration``): arq lets a Redis error of a poll
  escape ``main``, which ends the process and every job it runs; ``BatchClaimWorker`` skips
  that poll and polls again after ``POLL_RETRY_S`` (the jobs in flight go on).
- **A job's state** (what arq makes of the keys): live while queued (deferred retries stay in
  the queue) or in progress; ``enqueue_job`` refuses an id while its job or result key
  exists. ``job_state`` reads that, and can remove the leftovers, in one script.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

import msgspec
from arq import jobs as arq_jobs
from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix, job_key_prefix, result_key_prefix
from arq.jobs import Job
from arq.utils import timestamp_ms
from arq.worker import Worker
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from shared.logs import describe_error

logger = logging.getLogger(__name__)

ARQ_VERSION: Final = "0.28.0"  # the arq whose code every part below was checked against


# --- Key layout ----------------------------------------------------------------------------


def job_key(job_id: str) -> str:
    return job_key_prefix + job_id


def result_key(job_id: str) -> str:
    return result_key_prefix + job_id


def in_progress_key(job_id: str) -> str:
    return in_progress_key_prefix + job_id


RESULT_KEYS: Final = result_key_prefix + "*"  # a SCAN pattern over every stored result
# arq's per-job keys (job, result, in-progress, retry) share its one unprefixed namespace
# ("arq:"), whatever ``ARQ_QUEUE`` says: a SCAN pattern over all of them, for clean-ups.
JOB_KEYS: Final = job_key_prefix.split(":", 1)[0] + ":*"


# --- The records ---------------------------------------------------------------------------


class JobRecord(msgspec.Struct, forbid_unknown_fields=True):
    """arq's job (t, f, a, k, et) and result (the rest) records, field for field."""

    t: int | None  # the try the job was enqueued for; None unless the enqueuer set one
    f: str
    a: list[Any]
    k: dict[str, Any]
    et: int
    s: bool | None = None
    r: Any = None
    st: int | None = None
    ft: int | None = None
    q: str | None = None
    id: str | None = None


# --- Enqueue -------------------------------------------------------------------------------

# KEYS: the job key, the result key, the queue; ARGV: the record's lifetime (ms), the record,
# the score (enqueue time, ms), the job id. Returns 1 if it enqueued, else 0.
_ENQUEUE = """
if redis.call('EXISTS', KEYS[1], KEYS[2]) > 0 then return 0 end
redis.call('PSETEX', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4])
return 1
"""


async def enqueue_unique(
    arq: ArqRedis, queue: str, job_id: str, function: str, *args: Any, **kwargs: Any
) -> Job | None:
    """arq's ``enqueue_job(function, *args, _job_id=job_id, _queue_name=queue, **kwargs)``,
    stored exactly as arq stores it, in one round trip; ``None`` when the id's job or result
    exists."""
    enqueued_at = timestamp_ms()
    record = arq_jobs.serialize_job(
        function, args, kwargs, None, enqueued_at, serializer=arq.job_serializer
    )
    script = arq.register_script(_ENQUEUE)  # a SHA-1 of a short text; no round trip
    made = await script(
        keys=[job_key(job_id), result_key(job_id), queue],
        args=[arq.expires_extra_ms, record, enqueued_at, job_id],
    )
    if not made:
        return None
    return Job(job_id, redis=arq, _queue_name=queue, _deserializer=arq.job_deserializer)


# --- The worker's claim --------------------------------------------------------------------

# Atomic per job as arq's WATCH/MULTI makes it: a job not running anywhere (no in-progress
# key) and due (its score not in the future) is marked in progress and its score returned;
# any other gets false. KEYS: the queue, then each job's in-progress key; ARGV: now (ms), the
# lease (ms), then each job's id.
_CLAIM_JOBS = """
local now, lease = tonumber(ARGV[1]), ARGV[2]
local claimed = {}
for i = 2, #KEYS do
    local score = false
    if redis.call('EXISTS', KEYS[i]) == 0 then
        local queued = redis.call('ZSCORE', KEYS[1], ARGV[i + 1])
        if queued and tonumber(queued) <= now then
            redis.call('PSETEX', KEYS[i], lease, '1')
            score = queued
        end
    end
    claimed[i - 1] = score
end
return claimed
"""
CLAIM_BATCH = 100  # jobs per script call: bounds how long one call holds Redis
POLL_RETRY_S = 1.0  # after a poll Redis failed: the next try, not a busy loop on a dead link


class BatchClaimWorker(Worker):
    """arq's worker, with a poll's Redis work cut from four round trips per job to one per poll.

    arq leaves a running job in the queue until it ends, and every poll (``poll_delay``)
    re-examines each queued id with WATCH, EXISTS and ZSCORE, then MULTI/PSETEX/EXEC to claim
    it: four round trips per job per poll, whether it starts the job or finds it running. A
    ``process_order`` job runs for 2 s, so that was a dozen round trips per order, most of the
    worker's CPU (BENCHMARKS.md). Here a job this worker already runs (in ``self.tasks``) is
    skipped without asking Redis, and the others are claimed together by one script that
    applies arq's checks to each, atomically. The rest (the semaphore, the job counter,
    ``run_job``) is arq's, unchanged.
    """

    _claim: AsyncScript | None = None

    async def _poll_iteration(self) -> None:
        """arq's poll; a Redis outage (reset, refused, stalled past its timeout) skips it.

        In arq the error ends ``main``: the process exits, its running jobs die with it and
        wait for their in-progress marks to expire. Here the jobs go on, the poll comes back,
        and a deployment's restart policy is left for what cannot heal.
        """
        try:
            await super()._poll_iteration()
        except (RedisError, OSError, TimeoutError) as exc:
            logger.warning("worker poll skipped, redis unreachable: %s", describe_error(exc))
            await asyncio.sleep(POLL_RETRY_S)

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        todo = [job_id.decode() for job_id in job_ids]
        todo = [job_id for job_id in todo if job_id not in self.tasks]  # running here
        for start in range(0, len(todo), CLAIM_BATCH):
            if not await self._start_batch(todo[start : start + CLAIM_BATCH]):
                return

    async def _start_batch(self, job_ids: list[str]) -> bool:
        """Claim and start what it can of ``job_ids``; False once ``max_jobs`` are running."""
        batch: list[str] = []
        full = False
        for job_id in job_ids:
            await self.sem.acquire()
            if self.job_counter >= self.max_jobs:
                self.sem.release()
                full = True
                break
            self.job_counter += 1
            batch.append(job_id)
        if not batch:
            return not full
        if self._claim is None:
            self._claim = self.pool.register_script(_CLAIM_JOBS)
        try:
            scores = await self._claim(
                keys=[self.queue_name, *(in_progress_key(job_id) for job_id in batch)],
                args=[timestamp_ms(), int(self.in_progress_timeout_s * 1000), *batch],
            )
        except BaseException:
            for _ in batch:
                self._release_sem_dec_counter_on_complete()
            raise
        for job_id, score in zip(batch, scores, strict=True):
            if score is None:  # running elsewhere, finished, or deferred by a retry
                self._release_sem_dec_counter_on_complete()
                continue
            task = self.loop.create_task(self.run_job(job_id, int(float(score))))
            task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
            self.tasks[job_id] = task
        return not full


# --- A job's state -------------------------------------------------------------------------

LIVE, LOST, FAILED = "live", "lost", "failed"  # what ``job_state`` answers

# KEYS: the queue (zset), the job, in-progress and result keys; ARGV[1]: the job id;
# ARGV[2]: '1' to remove the leftovers, '0' to only look. Live means queued (deferred retries
# included: still in the zset) or running. The leftovers that make arq refuse the id are a
# stored result, or a job key whose queue entry is gone (arq would never run it). Returns
# 'live', 'failed' (a result was left) or 'lost'.
_JOB_STATE = """
if redis.call('ZSCORE', KEYS[1], ARGV[1]) or redis.call('EXISTS', KEYS[3]) == 1 then
    return 'live'
end
local had_result = redis.call('EXISTS', KEYS[4]) == 1
if ARGV[2] == '1' then
    redis.call('DEL', KEYS[2], KEYS[4])
end
if had_result then
    return 'failed'
end
return 'lost'
"""


async def job_state(arq: ArqRedis, queue: str, job_id: str, *, clear: bool) -> str:
    """``LIVE`` while arq has the job, ``LOST`` when it has nothing of it, ``FAILED`` when only
    its failed result is left; with ``clear``, a job that is not live has its leftovers
    removed, so that arq takes the id again."""
    script = arq.register_script(_JOB_STATE)
    state = await script(
        keys=[queue, job_key(job_id), in_progress_key(job_id), result_key(job_id)],
        args=[job_id, "1" if clear else "0"],
    )
    return state.decode() if isinstance(state, bytes) else str(state)
