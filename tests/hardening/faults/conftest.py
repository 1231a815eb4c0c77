"""Fixtures for the fault tests: faulty links to the real services, and the worker's log."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from features.process_order import job as process_order_job
from tests.logs import Lines
from tools.harness.faults import FaultyLink, StartLink, target_of


@pytest.fixture
def faults() -> Iterator[StartLink]:
    """``faults(url)`` starts a link to the server in ``url``; all close after the test.

    Request it before ``start_app`` (and the pipeline fixtures), so apps and workers stop
    while their links still exist.
    """
    links: list[FaultyLink] = []

    def start(url: str) -> FaultyLink:
        link = FaultyLink(target_of(url))
        link.start()
        links.append(link)
        return link

    yield start
    for link in links:
        link.close()


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
