"""What `just bench` exits with: a complete run that misses a target exits 0 with the miss
marked; ``--strict`` makes a miss fail; errors always fail; ``--smoke`` never takes
``--strict`` (no services: a report built from plain values)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.bench.report import MISS, render
from tools.bench.run import parse_args
from tools.bench.scenarios import Drain, Report, Result


def result(key: str, rps: float, p99_ms: float = 20.0, non_2xx: int = 0) -> Result:
    return Result(
        key, key, requests=int(rps * 10), seconds=10.0, p50_ms=10.0, p99_ms=p99_ms, non_2xx=non_2xx
    )


def report(cached_rps: float, *, cached_p99_ms: float = 20.0, non_2xx: int = 0) -> Report:
    out = Report(parse_args(["--output", str(Path("unused.md"))]))
    out.results = {
        "ceiling": result("ceiling", 10_000),
        "litestar_minimal": result("litestar_minimal", 8_000),
        "cached_get": result("cached_get", cached_rps, p99_ms=cached_p99_ms, non_2xx=non_2xx),
    }
    out.drain = Drain(orders=1000, created_s=3.0, processed_s=4.0)
    return out


def test_a_run_within_its_targets_passes_even_strict() -> None:
    text, outcome = render(report(cached_rps=6_000))
    assert outcome.errors == []
    assert outcome.missed == []
    assert outcome.exit_status(strict=True) == 0
    assert "| cached_get | 6,000 |" in text
    assert "≥ 0.65 × minimal; p99 ≤ 4 × p50 (2.0) | PASS; PASS |" in text


def test_a_missed_target_is_marked_and_fails_only_a_strict_run() -> None:
    text, outcome = render(report(cached_rps=4_000, cached_p99_ms=50.0))  # 0.50 × minimal, 5×
    assert outcome.missed == [
        "cached_get ≥ 0.65 × minimal",
        "cached_get p99 ≤ 4 × p50 (5.0)",
    ]
    assert f"| {MISS}; {MISS} |" in text
    assert "Targets missed: cached_get ≥ 0.65 × minimal" in text
    assert outcome.exit_status(strict=False) == 0
    assert outcome.exit_status(strict=True) == 1


def test_errors_fail_every_run() -> None:
    text, outcome = render(report(cached_rps=6_000, non_2xx=3))
    assert outcome.errors == ["cached_get: 3 errors"]
    assert "**ERRORS**" in text
    assert outcome.exit_status(strict=False) == 1


def test_a_drain_that_did_not_finish_is_an_error_and_a_slow_one_a_miss() -> None:
    slow = report(cached_rps=6_000)
    slow.drain = Drain(orders=1000, created_s=3.0, processed_s=5.5)
    _, outcome = render(slow)
    assert (outcome.errors, outcome.missed) == ([], ["drain"])
    stuck = report(cached_rps=6_000)
    stuck.drain = Drain(orders=1000, created_s=3.0, note="gave up after 120 s: 12 left")
    _, outcome = render(stuck)
    assert outcome.errors == ["drain: gave up after 120 s: 12 left"]


def test_smoke_refuses_strict() -> None:
    assert parse_args(["--strict"]).strict
    assert not parse_args(["--smoke"]).strict
    with pytest.raises(SystemExit):
        parse_args(["--smoke", "--strict"])
