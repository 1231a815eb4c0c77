"""Fixtures for the fault tests: the worker's log (the faulty links: ``faults``, from
tests/workers/conftest.py)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from features.process_order import job as process_order_job
from tests.logs import Lines


@pytest.fixture
def worker_log() -> Iterator[Lines]:
    """The in-process worker's ``process_order`` lines. On the job's own logger, not the root:
    ``create_app`` replaces the root's handlers (and with them pytest's ``caplog``)."""
    lines = Lines()
    logger = process_order_job.logger
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(lines)
    try:
        yield lines
    finally:
        logger.removeHandler(lines)
        logger.setLevel(level)
