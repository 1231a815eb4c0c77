"""The code that mirrors arq's internals was read against one arq: another one fails here.

An upgrade must not pass silently: re-read ``shared/messaging/arq_mirror.py`` against the new
arq's ``ArqRedis.enqueue_job``, ``Worker.start_jobs``, ``serialize_job``/``serialize_result``
and ``arq.constants``, then move ``ARQ_VERSION``.
"""

from __future__ import annotations

import importlib.metadata
import inspect

from arq import jobs as arq_jobs
from arq.worker import Worker

from shared.messaging.arq_mirror import ARQ_VERSION, JobRecord


def test_the_installed_arq_is_the_one_the_mirror_was_written_against() -> None:
    installed = importlib.metadata.version("arq")
    assert installed == ARQ_VERSION, (
        f"arq {installed} is installed; shared/messaging/arq_mirror.py mirrors {ARQ_VERSION}:"
        " re-read it against the new arq, then move ARQ_VERSION"
    )


def test_the_private_worker_state_the_claim_uses_is_still_there() -> None:
    """The attributes ``BatchClaimWorker`` drives; a rename would fail only under load."""
    source = inspect.getsource(Worker)
    for name in ("self.sem", "self.job_counter", "def _release_sem_dec_counter_on_complete"):
        assert name in source


def test_arq_writes_the_records_the_mirror_decodes() -> None:
    """What arq's own serializers put in a job and a result, read by ``JobRecord``."""
    seen: list[dict[str, object]] = []

    def keep(data: dict[str, object]) -> bytes:
        seen.append(data)
        return b""

    arq_jobs.serialize_job("f", ("a",), {}, 1, 2, serializer=keep)
    arq_jobs.serialize_result(
        "f", ("a",), {}, 1, 2, True, "r", 3, 4, "ref", "q", "id", serializer=keep
    )
    job, result = seen
    assert set(job) == {"t", "f", "a", "k", "et"}
    assert set(result) == set(JobRecord.__struct_fields__)
