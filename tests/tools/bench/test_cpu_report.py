"""The bench's CPU-per-order arithmetic: grouping processes, ticks between two snapshots, the
division by orders and the target verdicts (no services: plain values in, plain values out)."""

from __future__ import annotations

import math

import pytest

from tools.bench.cpu import (
    CPU_TARGETS_MS,
    TOTAL,
    CpuUse,
    ProcStat,
    classify,
    parse_stat,
    per_order_ms,
    used_ticks,
    verdicts,
)
from tools.bench.report import Outcome, cpu_table


def proc(pid: int, ppid: int, comm: str, ticks: int = 0, started: int = 1) -> ProcStat:
    return ProcStat(pid=pid, ppid=ppid, comm=comm, started=started, ticks=ticks)


MACHINE = [
    proc(10, 1, "python"),  # the API's uvicorn supervisor
    proc(11, 10, "python"),  # a serving process
    proc(12, 10, "python"),  # the resource tracker
    proc(13, 11, "python"),  # a grandchild
    proc(20, 1, "python"),  # the consumer
    proc(30, 1, "python"),  # the worker
    proc(40, 1, "postgres"),
    proc(41, 40, "postgres"),
    proc(50, 1, "redis-server"),
    proc(60, 1, "beam.smp"),
    proc(61, 60, "erl_child_setup"),
    proc(62, 61, "inet_gethost"),
    proc(70, 1, "epmd"),  # RabbitMQ's port mapper, not a child of beam.smp
    proc(80, 1, "python"),  # somebody else's
]
ROOTS = {"api": 10, "consumer": 20, "worker": 30}


def test_parse_stat_reads_ticks_past_a_name_with_spaces_and_parentheses() -> None:
    fields = ["S", "7", *["0"] * 9, "150", "25", "99", "99", *["0"] * 4, "123456", "0"]
    parsed = parse_stat(42, "42 (odd) name) " + " ".join(fields))
    assert parsed == ProcStat(pid=42, ppid=7, comm="odd) name", started=123456, ticks=175)


def test_classify_takes_trees_for_our_processes_and_names_for_the_services() -> None:
    groups = {group: set(procs) for group, procs in classify(MACHINE, ROOTS).items()}
    assert groups == {
        "api": {10, 11, 12, 13},
        "consumer": {20},
        "worker": {30},
        "PostgreSQL": {40, 41},
        "Redis": {50},
        "RabbitMQ": {60, 61, 62},
    }


def test_used_ticks_counts_deltas_new_processes_and_reused_pids_but_not_the_gone() -> None:
    before = {
        "api": {10: proc(10, 1, "python", ticks=100), 11: proc(11, 10, "python", ticks=500)},
        "PostgreSQL": {
            40: proc(40, 1, "postgres", ticks=1000),
            41: proc(41, 40, "postgres", ticks=70, started=5),
            42: proc(42, 40, "postgres", ticks=300),  # exits before the second snapshot
        },
    }
    after = {
        "api": {10: proc(10, 1, "python", ticks=104), 11: proc(11, 10, "python", ticks=650)},
        "PostgreSQL": {
            40: proc(40, 1, "postgres", ticks=1010),
            41: proc(41, 40, "postgres", ticks=8, started=9),  # pid 41 reused: all of it new
            43: proc(43, 40, "postgres", ticks=30),  # a new backend: all of it counts
        },
        "Redis": {50: proc(50, 1, "redis-server", ticks=20)},
    }
    assert used_ticks(before, after) == {"api": 154, "PostgreSQL": 48, "Redis": 20}


def test_per_order_ms_divides_each_group_and_the_total_by_the_orders() -> None:
    ms = per_order_ms({"api": 300, "worker": 50, "Redis": 0}, orders=1000, clock_ticks=100)
    assert ms == pytest.approx({"api": 3.0, "worker": 0.5, "Redis": 0.0, TOTAL: 3.5})


def test_per_order_ms_without_orders_is_not_a_number() -> None:
    ms = per_order_ms({"api": 300}, orders=0, clock_ticks=100)
    assert set(ms) == {"api", TOTAL}
    assert all(math.isnan(value) for value in ms.values())


def test_verdicts_pass_at_the_target_and_fail_above_it_or_unmeasured() -> None:
    ms = {"api": 3.0, "consumer": 1.01, "worker": math.nan, "Redis": 99.0, TOTAL: 5.9}
    assert verdicts(ms) == {TOTAL: True, "api": True, "consumer": False, "worker": False}
    assert set(verdicts({})) == set(CPU_TARGETS_MS)


def ticks_for(api_ms: float, orders: int = 100) -> dict[str, int]:
    """Ticks (at 100 a second) giving ``api_ms`` per order to the API, 0.5 to the worker and
    the consumer; PostgreSQL's was not read."""
    return {"api": round(api_ms * orders / 10), "consumer": orders // 20, "worker": orders // 20}


def test_cpu_table_marks_a_missed_target_without_making_it_an_error() -> None:
    over = CpuUse(orders=100, seconds=2.0, ticks=ticks_for(4.0), clock_ticks=100)
    outcome = Outcome()
    lines = cpu_table(over, outcome)
    assert outcome.missed == ["CPU ms per order, api"]
    assert not outcome.errors
    assert "| api | 0.40 | 4.00 | ≤ 3 | **MISS** |" in lines
    assert "| **total** | 0.50 | 5.00 | ≤ 6 | PASS |" in lines
    assert "| PostgreSQL | n/a | n/a |  |  |" in lines
    within = CpuUse(orders=100, seconds=2.0, ticks=ticks_for(2.0), clock_ticks=100)
    clean = Outcome()
    cpu_table(within, clean)
    assert clean == Outcome()


def test_cpu_table_makes_orders_left_unprocessed_an_error() -> None:
    stalled = CpuUse(
        orders=100, seconds=40.0, ticks=ticks_for(2.0), clock_ticks=100, note="gave up: 7 left"
    )
    outcome = Outcome()
    lines = cpu_table(stalled, outcome)
    assert outcome.errors == ["CPU per order: gave up: 7 left"]
    assert "gave up: 7 left" in lines[0]
