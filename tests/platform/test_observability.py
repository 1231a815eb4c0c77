"""What an operator sees: request ids, structured log lines, metrics, the job queue report."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db import Database, create_engine
from shared.logs import JsonFormatter, configure_logging, request_id_var
from shared.messaging.jobs import PROCESS_ORDER, create_arq_redis, process_order_job_id
from shared.models import OutboxEvent
from shared.redis import create_redis
from shared.settings import Settings
from tests.accounts import Account
from tests.apps import metrics_headers, with_settings
from tests.orders import Client, create_order
from tests.processes import RunModule, run_module, start_api, stops_on_sigterm
from workers.queue_status import queue_report, render

__all__ = ["run_module"]  # the fixture, imported for pytest


async def test_every_response_carries_a_fresh_request_id(client: Client) -> None:
    first = await client.get("/health")
    second = await client.get("/health")
    assert len(first.headers["x-request-id"]) == 32
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


async def test_a_sane_caller_request_id_is_echoed(client: Client) -> None:
    response = await client.get("/health", headers={"X-Request-ID": "req-42.a:b"})
    assert response.headers["x-request-id"] == "req-42.a:b"


@pytest.mark.parametrize("sent", ["", "x" * 129, "bad id", "new\\nline", "ü"])
async def test_an_unsafe_caller_request_id_is_replaced(client: Client, sent: str) -> None:
    response = await client.get("/health", headers=[(b"X-Request-ID", sent.encode("utf-8"))])
    assert response.headers["x-request-id"] != sent
    assert len(response.headers["x-request-id"]) == 32


@pytest.fixture
def json_log(settings: Settings) -> Iterator[io.StringIO]:
    """Route the root logger through the production JSON setup into a buffer."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    configure_logging(with_settings(settings, environment="production", log_json=None))
    buffer = io.StringIO()
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(buffer)
    yield buffer
    root.handlers[:], root.level = saved


def test_production_logs_are_json_lines_with_request_and_order_ids(json_log: io.StringIO) -> None:
    token = request_id_var.set("req-1")
    try:
        logging.getLogger("features.process_order.job").info(
            "Order %s processed", "abc", extra={"order_id": "abc"}
        )
    finally:
        request_id_var.reset(token)
    line = json.loads(json_log.getvalue().splitlines()[-1])
    assert line["message"] == "Order abc processed"
    assert line["order_id"] == "abc"
    assert line["request_id"] == "req-1"
    assert line["level"] == "INFO"


def test_json_lines_carry_the_exception() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.getLogger("x").makeRecord(
            "x", logging.ERROR, __file__, 1, "failed", (), exc_info=sys.exc_info()
        )
    line = json.loads(JsonFormatter().format(record))
    assert "ValueError: boom" in line["exc"]


async def test_metrics_count_requests_by_route_template_and_real_status(
    client: Client, alice: Account, settings: Settings
) -> None:
    order = await create_order(client, alice)
    await client.get(f"/orders/{order['id']}", headers=alice.headers)
    await client.get(f"/orders/{order['id']}")  # 401 from the auth middleware
    metrics = (await client.get("/metrics", headers=metrics_headers(settings))).text
    get_line = 'method="GET",path="/orders/{order_id}",status_code="%s"'
    assert get_line % "200" in metrics
    assert get_line % "401" in metrics
    assert str(order["id"]) not in metrics  # labelled by template: bounded cardinality


async def test_metrics_need_the_metrics_token_and_are_not_in_the_api_schema(
    client: Client, alice: Account, settings: Settings
) -> None:
    scraper = await client.get("/metrics", headers=metrics_headers(settings))
    anonymous = await client.get("/metrics")
    a_user = await client.get("/metrics", headers=alice.headers)
    schema = (await client.get("/schema/openapi.json")).json()
    assert scraper.status_code == 200
    assert "orders_api_requests_total" in scraper.text
    assert (anonymous.status_code, a_user.status_code) == (401, 401)
    assert "orders_api" not in anonymous.text + a_user.text
    assert "/metrics" not in schema["paths"]


async def test_the_jobs_report_shows_queued_jobs_and_the_outbox_backlog(settings: Settings) -> None:
    report_settings = with_settings(
        settings, arq_queue=f"{settings.arq_queue}:{uuid.uuid4().hex[:6]}"
    )
    order_id = uuid.uuid4()
    arq = create_arq_redis(report_settings, max_connections=2)
    redis: Redis = create_redis(settings.redis_url, max_connections=2)
    engine: AsyncEngine = create_engine(settings)
    try:
        async with engine.begin() as conn:  # an event the API could not publish yet
            await conn.execute(
                insert(OutboxEvent).values(
                    id=uuid.uuid4(), event_type="new_order", order_id=order_id, payload=b"{}"
                )
            )
        await arq.enqueue_job(
            PROCESS_ORDER,
            str(order_id),
            _job_id=process_order_job_id(order_id),
            _queue_name=report_settings.arq_queue,
        )
        report = await queue_report(report_settings, redis, Database(engine))
        text = render(report, report_settings)
    finally:
        await redis.delete(report_settings.arq_queue, f"arq:job:{process_order_job_id(order_id)}")
        await arq.aclose()
        await redis.aclose()
        await engine.dispose()
    assert report.queued == 1
    assert report.running == []
    assert report.outbox_backlog >= 1
    assert f"arq queue {report_settings.arq_queue}" in text
    assert "queued       1" in text


@pytest.mark.parametrize(("flag", "logged"), [("--no-access-log", False), ("--access-log", True)])
async def test_uvicorn_access_log_follows_its_flag(
    run_module: RunModule, settings: Settings, tmp_path: Path, flag: str, logged: bool
) -> None:
    """``--no-access-log`` (every run command passes it) writes no line per request; the
    app's logging setup once routed uvicorn's silenced access logger through its own."""
    process, base = await start_api(run_module, settings, "access", flag)
    async with httpx.AsyncClient(base_url=base) as client:
        assert (await client.get("/health", headers={"X-Request-ID": "access-probe"})).is_success
    await stops_on_sigterm(process, within=20)
    lines = (tmp_path / "access.log").read_text()
    assert ("GET /health" in lines) is logged
    assert "Uvicorn running" in lines or "Application startup complete" in lines


async def test_metrics_of_every_api_process_are_exact_within_a_second(
    run_module: RunModule,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Requests are counted in each process's memory and handed to the multi-process files off
    the request path (issue 22); /metrics, a second later, shows every one of them, whichever
    of the two processes served it, with its real status."""
    files = tmp_path / "prometheus"
    files.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(files))
    process, base = await start_api(run_module, settings, "two", "--workers", "2")
    sent = 40
    async with httpx.AsyncClient(base_url=base) as client:
        for _ in range(sent):  # new connections: both processes serve some
            async with httpx.AsyncClient(base_url=base) as one_connection:
                assert (await one_connection.get("/users/me")).status_code == 401
        await asyncio.sleep(1.0)
        metrics = (await client.get("/metrics", headers=metrics_headers(settings))).text
    await stops_on_sigterm(process, within=20)  # its workers too (a kill would orphan them)
    labels = 'app_name="order_service",method="GET",path="/users/me",status_code="401"'
    assert f"orders_api_requests_total{{{labels}}} {sent:.1f}" in metrics
    assert f"orders_api_request_duration_seconds_count{{{labels}}} {sent:.1f}" in metrics
    running = labels.replace('"401"', '"200"')
    assert f"orders_api_requests_in_progress{{{running}}} 0.0" in metrics
    assert len({p.name.split("_")[-1] for p in files.glob("counter_*.db")}) == 2  # two processes
