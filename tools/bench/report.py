"""The figures as markdown: the scenario table against the ceiling (and litestar_minimal) and
its targets, the drain, the login probe, the notes, CPU per order and memory (stdout and
.bench/last.md).
"""

from __future__ import annotations

import math
import os
import subprocess
import time
from dataclasses import dataclass, field

from tools.bench.cpu import CPU_TARGETS_MS, GROUPS, SERVICES, TOTAL, CpuUse, verdicts
from tools.bench.scenarios import DRAIN_CONNECTIONS, QUIET, Drain, Report
from tools.bench.seed import DEEP_AT
from tools.bench.stack import BENCH_RATE_LIMIT, CLIENT_ADDRESSES
from tools.harness.names import ROOT

MINIMAL = "litestar_minimal"
YARDSTICKS = {"ceiling": "ceiling", MINIMAL: "minimal"}  # result key -> its column's name
# Targets from issue 22: fractions of a yardstick's requests/s (the ceiling or
# litestar_minimal). PATCH's is on the real transition; the no-op is shown only.
TARGETS: dict[str, list[tuple[str, float]]] = {
    "cached_get": [(MINIMAL, 0.65)],  # against Litestar alone, not the bare ceiling
    "list_50": [("ceiling", 0.15)],
    "patch_move": [("ceiling", 0.12)],
    "post_order": [("ceiling", 0.08)],
}
# The tail under the saturating load: p99 over p50 (issue 22: at 64 connections).
TAIL_TARGETS = {"cached_get": 4.0}
DRAIN_TARGET_S = 5.0
DRAIN_TARGET_ORDERS = 1000
LOGIN_P99_FACTOR = 2.0
DEEP_PAGE_FACTOR = 1.5  # issue 20: the page after 199,950 orders against the first
API_RSS_LIMIT_MB = 150.0
MISS = "**MISS**"


@dataclass
class Outcome:
    """What a run says besides its figures: errors (a broken or incomplete run: the exit
    status always says so) and missed targets (marked in the tables; the exit status says so
    only under ``--strict``, so a complete run that misses a target does not read as broken).
    """

    errors: list[str] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)

    def target(self, name: str, ok: bool) -> str:
        """The result cell of one target, remembering a miss."""
        if ok:
            return "PASS"
        self.missed.append(name)
        return MISS

    def exit_status(self, strict: bool) -> int:
        return 1 if self.errors or (strict and self.missed) else 0


def fraction_text(fraction: float) -> str:
    return f"{fraction:.2f}" if not math.isnan(fraction) else "n/a"


def scenario_table(report: Report, outcome: Outcome) -> list[str]:
    results = report.results
    tops: dict[str, float] = {}
    for name in YARDSTICKS:
        yardstick = results.get(name)
        tops[name] = yardstick.rps if yardstick is not None and yardstick.rps else math.nan
    lines = [
        "| scenario | requests/s | p50 ms | p99 ms | errors | × ceiling | × minimal | target"
        " | result |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for key, result in results.items():
        fractions = {name: result.rps / top for name, top in tops.items()}
        targets = [
            (f"≥ {target:.2f} × {YARDSTICKS[name]}", fractions[name] >= target)
            for name, target in TARGETS.get(key, [])
        ]
        if (tail := TAIL_TARGETS.get(key)) is not None:
            ratio = result.p99_ms / result.p50_ms if result.p50_ms else math.inf
            targets.append((f"p99 ≤ {tail:g} × p50 ({ratio:.1f})", ratio <= tail))
        if result.errors:
            cell = "**ERRORS**"
            outcome.errors.append(f"{key}: {result.errors} errors")
        else:
            cell = "; ".join(outcome.target(f"{key} {text}", ok) for text, ok in targets)
        rps = f"{result.rps:,.0f}" if result.rps >= 100 else f"{result.rps:.1f}"
        cells = [
            result.label,
            rps,
            f"{result.p50_ms:.1f}",
            f"{result.p99_ms:.1f}",
            str(result.errors),
            fraction_text(fractions["ceiling"]),
            fraction_text(fractions[MINIMAL]),
            "; ".join(text for text, _ in targets),
            cell,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def cpu_table(cpu: CpuUse, outcome: Outcome) -> list[str]:
    """CPU ms per order for each process group and the total, against the targets; orders
    left unprocessed make the run an error."""
    ms = cpu.ms_per_order
    oks = verdicts(ms)
    lines = [
        f"CPU ms per order: POST /orders (warm-up included) and the processing of its"
        f" {cpu.orders:,} orders, {cpu.seconds:.1f} s from just before the load until the last"
        f" had processed_at{f' ({cpu.note})' if cpu.note else ''}.",
        "",
        "| process group | CPU s | ms per order | target | result |",
        "| --- | ---: | ---: | --- | --- |",
    ]
    for group in (*GROUPS, TOTAL):
        ticks = sum(cpu.ticks.values()) if group == TOTAL else cpu.ticks.get(group)
        value = ms.get(group, math.nan)
        target = CPU_TARGETS_MS.get(group)
        cells = [
            f"**{group}**" if group == TOTAL else group,
            f"{ticks / cpu.clock_ticks:.2f}" if ticks is not None else "n/a",
            f"{value:.2f}" if not math.isnan(value) else "n/a",
            f"≤ {target:g}" if target is not None else "",
            outcome.target(f"CPU ms per order, {group}", oks[group]) if group in oks else "",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"- {', '.join(SERVICES)}: every such process on the machine (postgres, redis-server,"
        " beam.smp and its children), shared with anything else that uses them, so their"
        " figures are upper bounds. The API: uvicorn's supervisor and all its children. A"
        " process that exited during the window is not counted.",
    ]
    if cpu.note.startswith("gave up"):
        outcome.errors.append(f"CPU per order: {cpu.note}")
    return lines


def source_version() -> str:
    """The commit benchmarked, and whether the working tree differed from it."""
    try:
        described = subprocess.run(
            ["git", "describe", "--always", "--dirty"],  # noqa: S607 - git from PATH
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "an unknown commit"
    return f"`{described}`"


def drain_line(d: Drain, outcome: Outcome) -> str:
    """The drain's line: its time against the target (at full size); unfinished is an error."""
    if d.processed_s is None:
        if not d.note.startswith("n/a"):
            outcome.errors.append(f"drain: {d.note}")
        return f"- Drain of {d.orders} orders: {d.note or 'n/a'}"
    if d.note:
        outcome.errors.append(f"drain: {d.note}")
    full_size = d.orders >= DRAIN_TARGET_ORDERS
    ok = d.processed_s <= DRAIN_TARGET_S * d.orders / DRAIN_TARGET_ORDERS
    return (
        f"- Drain: {d.orders} orders POSTed back to back over {DRAIN_CONNECTIONS}"
        f" connections, all with processed_at after **{d.processed_s:.1f} s** (all"
        f" created after {d.created_s:.1f} s); target ≤ {DRAIN_TARGET_S:g} s for"
        f" {DRAIN_TARGET_ORDERS:,}: "
        + (outcome.target("drain", ok) if full_size else "not measured at this size")
        + (f"; {d.note}" if d.note else "")
    )


def render(report: Report) -> tuple[str, Outcome]:
    """The markdown report, and its outcome: errors, and the targets missed (marked MISS)."""
    plan = report.plan
    outcome = Outcome()
    lines = [
        f"Run {time.strftime('%Y-%m-%d %H:%M')} of {source_version()}:"
        f" {os.cpu_count()} cores; uvicorn, "
        f"{plan.workers} API processes ({plan.app}), one consumer, one worker; wrk"
        f" -t{plan.threads} -c{plan.connections}; {plan.duration} s per scenario after a"
        f" {plan.warmup} s warm-up{'; smoke run' if plan.smoke else ''}.",
        "",
    ]
    lines += [*scenario_table(report, outcome), ""]
    if report.drain is not None:
        lines.append(drain_line(report.drain, outcome))
    if report.login_probe is not None:
        alone, loaded = report.login_probe
        ratio = loaded.p99_ms / alone.p99_ms if alone.p99_ms else math.inf
        verdict = outcome.target("GET p99 under /token load", ratio <= LOGIN_P99_FACTOR)
        lines.append(
            f"- Cached GET p99 while /token is loaded ({loaded.label}): {loaded.p99_ms:.1f} ms,"
            f" vs {alone.p99_ms:.1f} ms without logins, both at a steady ~{alone.rps:,.0f}"
            f" req/s: **{ratio:.1f}×**; target ≤ {LOGIN_P99_FACTOR:g}×: {verdict}"
        )
        if loaded.errors or alone.errors:
            lines.append(f"  - errors during the probe: {loaded.errors + alone.errors}")
            outcome.errors.append(f"login probe: {loaded.errors + alone.errors} errors")
    if report.deep_page is not None:
        first, deep = report.deep_page
        ratio = first.rps / deep.rps if deep.rps else math.inf
        verdict = outcome.target("keyset page at depth", ratio <= DEEP_PAGE_FACTOR)
        lines.append(
            f"- Keyset page at depth: the page after {DEEP_AT:,} orders costs {ratio:.2f}× the"
            f" first (requests/s {first.rps:,.0f} vs {deep.rps:,.0f}; p50 {first.p50_ms:.1f} vs"
            f" {deep.p50_ms:.1f} ms); target ≤ {DEEP_PAGE_FACTOR:g}×: {verdict}"
        )
    if report.api_rss_after:
        worst = max(m.rss_mb for m in report.api_rss_after)
        each = ", ".join(f"{m.rss_mb:.0f}" for m in report.api_rss_after)
        lines.append(
            f"- API process RSS after the run: {each} MB; target ≤ {API_RSS_LIMIT_MB:g} MB:"
            f" {outcome.target('API RSS', worst <= API_RSS_LIMIT_MB)}"
        )
    lines += [f"- {note}" for note in report.notes]
    if report.cpu is not None:
        lines += ["", *cpu_table(report.cpu, outcome)]
    if report.memory:
        lines += [
            "",
            "| process | peak RSS (VmHWM) MB | RSS at the end MB |",
            "| --- | ---: | ---: |",
        ]
        lines += [f"| {m.process} | {m.peak_mb:.0f} | {m.rss_mb:.0f} |" for m in report.memory]
    if outcome.errors:
        lines += ["", f"**Errors**: {'; '.join(outcome.errors)}."]
    if outcome.missed:
        lines += ["", f"Targets missed: {'; '.join(outcome.missed)}."]
    return "\n".join(lines) + "\n", outcome


def add_notes(report: Report, rounds: int) -> None:
    """The notes under the table: the settings that shape the figures, and what makes one
    suspect."""
    report.notes.append(
        f"bcrypt cost {rounds} (the default). Rate limits {BENCH_RATE_LIMIT}, with"
        f" X-Forwarded-For rotating over {CLIENT_ADDRESSES:,} client addresses: the limiter"
        " does its full work on every request and refuses none."
    )
    moved = report.results.get("patch_move")
    if moved is not None and moved.wrapped:
        report.notes.append("PENDING -> PAID ran out of PENDING orders: later PATCHes were no-ops.")
    elif moved is not None:
        report.notes.append(
            f"PENDING -> PAID: each of the {moved.requests:,} PATCHes moved a different order."
        )
    noisy = [r for r in report.results.values() if r.busy_before >= QUIET]
    if noisy:
        listed = ", ".join(f"{r.key} ({r.busy_before:.0%})" for r in noisy)
        report.notes.append(
            f"The cores were already ≥ {QUIET:.0%} busy before: {listed}; other work on the"
            " machine makes those numbers low."
        )
    warm = report.results.get("cached_get")
    if warm is not None and warm.cache.get("MISS"):
        report.notes.append(f"Cached GET had {warm.cache['MISS']:,} misses (cache TTL expired?).")
    cold = report.results.get("cold_get")
    if cold is not None:
        misses, hits = cold.cache.get("MISS", 0), cold.cache.get("HIT", 0)
        report.notes.append(f"Cold GET answered {misses:,} misses and {hits:,} hits.")
