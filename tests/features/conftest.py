"""The event pipeline's fixtures, for the job slices (process_order, reconcile_orders): the
ones tests/workers defines, imported so both suites run them alike."""

from __future__ import annotations

from tests.workers.conftest import (  # noqa: F401 - fixtures, registered by import
    _remove_arq_keys,
    engine,
    new_order,
    own_database,
    pipeline_settings,
    redis,
)
