"""CPU time per process group, read from /proc: what one POSTed order costs each part of the
pipeline (the API, consumer and worker, and the PostgreSQL, Redis and RabbitMQ they use).

A snapshot reads ``utime + stime`` of every process from ``/proc/<pid>/stat``: for a process
that is the sum over all of its threads, those that have exited included. The API, consumer
and worker groups are each a process and all its descendants (uvicorn's supervisor, its
serving processes and multiprocessing helpers). The services are every process of theirs on
the machine: shared with anything else that uses them, so their figures are upper bounds.
A process that exits between two snapshots is not counted (its time is gone with it).

The arithmetic (``classify``, ``used_ticks``, ``per_order_ms``, ``verdicts``) takes plain
values, so tests check it without services.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

# The groups in the order of the table; the first three are ours, the rest the services'.
PIPELINE = ("api", "consumer", "worker")
SERVICES = ("PostgreSQL", "Redis", "RabbitMQ")
GROUPS = (*PIPELINE, *SERVICES)
TOTAL = "total"
# Targets from the issue, in CPU ms per order; the groups without one are shown only.
CPU_TARGETS_MS = {TOTAL: 6.0, "api": 3.0, "worker": 1.5, "consumer": 1.0}
# Process names (/proc's comm) of the services; RabbitMQ's children come with beam.smp.
SERVICE_COMMS = {"PostgreSQL": "postgres", "Redis": "redis-server", "RabbitMQ": "beam.smp"}
WITH_DESCENDANTS = frozenset({"RabbitMQ"})


@dataclass(frozen=True)
class ProcStat:
    pid: int
    ppid: int
    comm: str
    started: int  # clock ticks after boot: tells a reused pid from the process seen before
    ticks: int  # utime + stime, in clock ticks


# group -> pid -> the process as seen in one snapshot
Snapshot = dict[str, dict[int, ProcStat]]


def parse_stat(pid: int, text: str) -> ProcStat:
    """One ``/proc/<pid>/stat`` line (the name in parentheses may hold spaces and ")")."""
    head, _, rest = text.rpartition(")")
    fields = rest.split()  # fields[0] is field 3 (state) of proc(5)
    return ProcStat(
        pid=pid,
        ppid=int(fields[1]),
        comm=head.partition("(")[2],
        started=int(fields[19]),
        ticks=int(fields[11]) + int(fields[12]),
    )


def read_procs() -> list[ProcStat]:
    found: list[ProcStat] = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                found.append(parse_stat(int(entry.name), (entry / "stat").read_text()))
    return found


def classify(procs: Iterable[ProcStat], roots: Mapping[str, int]) -> Snapshot:
    """Each process in its group: ``roots`` (group -> pid) with their descendants, then the
    services by name (RabbitMQ's beam.smp with its descendants too)."""
    procs = list(procs)
    kids: dict[int, list[int]] = {}
    for proc in procs:
        kids.setdefault(proc.ppid, []).append(proc.pid)

    def tree(pid: int) -> set[int]:
        found, todo = {pid}, [pid]
        while todo:
            more = kids.get(todo.pop(), [])
            found.update(more)
            todo.extend(more)
        return found

    members: dict[str, set[int]] = {group: tree(pid) for group, pid in roots.items()}
    for group, comm in SERVICE_COMMS.items():
        named = [p.pid for p in procs if p.comm == comm]
        members[group] = (
            set().union(*(tree(pid) for pid in named)) if group in WITH_DESCENDANTS else set(named)
        )
    return {
        group: {p.pid: p for p in procs if p.pid in members.get(group, set())}
        for group in (*roots, *SERVICE_COMMS)
    }


def snapshot(roots: Mapping[str, int]) -> Snapshot:
    return classify(read_procs(), roots)


def used_ticks(before: Snapshot, after: Snapshot) -> dict[str, int]:
    """Clock ticks each group used between two snapshots. A process new since ``before`` (or
    a reused pid) counts all its time: it all fell in between."""
    used: dict[str, int] = {}
    for group, procs in after.items():
        earlier = before.get(group, {})
        total = 0
        for pid, proc in procs.items():
            seen = earlier.get(pid)
            base = seen.ticks if seen is not None and seen.started == proc.started else 0
            total += max(0, proc.ticks - base)
        used[group] = total
    return used


def per_order_ms(ticks: Mapping[str, int], orders: int, clock_ticks: int) -> dict[str, float]:
    """CPU ms per order for each group and their total (NaN when no order was made)."""
    if orders <= 0:
        return dict.fromkeys((*ticks, TOTAL), math.nan)
    ms = {group: t * 1000 / clock_ticks / orders for group, t in ticks.items()}
    ms[TOTAL] = sum(ticks.values()) * 1000 / clock_ticks / orders
    return ms


def verdicts(
    ms: Mapping[str, float], targets: Mapping[str, float] = CPU_TARGETS_MS
) -> dict[str, bool]:
    """Each targeted group: within its target (NaN, i.e. not measured, is not)."""
    return {group: ms.get(group, math.nan) <= limit for group, limit in targets.items()}


def clock_ticks_per_second() -> int:
    return os.sysconf("SC_CLK_TCK")


@dataclass
class CpuUse:
    """The POST /orders scenario and the processing of its orders, as CPU per group."""

    orders: int
    seconds: float
    ticks: dict[str, int]
    clock_ticks: int = field(default_factory=clock_ticks_per_second)
    note: str = ""  # set when not every order was processed (the figures are then short)

    @property
    def ms_per_order(self) -> dict[str, float]:
        return per_order_ms(self.ticks, self.orders, self.clock_ticks)
