"""Fixtures for the hardening tests: the event pipeline (faulty links: faults/conftest.py).

The pipeline fixtures (per-test topology and arq queue, in-process consumer and worker, the
arq key clean-up) are the ones tests/workers uses, imported so both suites run them alike.
"""

from __future__ import annotations

from tests.processes import run_module  # noqa: F401 - a fixture
from tests.workers.conftest import (  # noqa: F401 - fixtures, registered by import
    _remove_arq_keys,
    bus,
    engine,
    faults,
    new_order,
    own_database,
    pipeline_settings,
    rabbitmq,
    redis,
    start_consumer,
    start_worker,
)
