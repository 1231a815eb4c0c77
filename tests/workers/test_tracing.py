"""One trace per order (shared/tracing.py), shown on the real processes: the API under uvicorn,
the consumer and the worker, exporting over OTLP/HTTP to a receiver the test runs."""

from __future__ import annotations

import functools
import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db import create_engine
from shared.models import OutboxEvent
from shared.settings import Settings
from tests.accounts import Account, make_account
from tests.apps import with_settings
from tests.orders import create_order
from tests.pipeline import processed_at, wait_for
from tests.processes import RunModule, run_module, start_api
from tests.tracing import Collector, Span, Stall, closed_port_url, collector

__all__ = ["collector", "run_module"]  # the fixtures, imported for pytest


def traced(settings: Settings, endpoint: str, **changes: Any) -> Settings:
    """``settings`` exporting to ``endpoint`` every 100 ms, logging JSON; the sweeper leaves
    the relay's rows alone (so one publish per event, the relay's)."""
    defaults: dict[str, Any] = {
        "otel_exporter_otlp_endpoint": endpoint,
        "otel_bsp_schedule_delay": 100,
        "log_json": True,
        "outbox_sweep_age_s": 30.0,
    }
    return with_settings(settings, **{**defaults, **changes})


# A client's own trace context, which the API does not believe.
CLIENT_TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


async def post_order(base: str) -> tuple[Account, str]:
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        account = await make_account(client)
        order = await create_order(client, account, traceparent=CLIENT_TRACEPARENT)
    return account, str(order["id"])


async def parent_of(collector: Collector, span: Span) -> Span:
    """The span's parent, once its process exported it."""

    async def exported() -> Span | None:
        return next((s for s in collector.spans if s.span_id == span.parent_id), None)

    parent: Span = await wait_for(exported, within=20)
    assert parent.trace_id == span.trace_id
    return parent


async def start_traced_stack(run_module: RunModule, settings: Settings, **api: Any) -> str:
    """The consumer and the worker on ``settings``, and one API process on them with ``api``
    changed; the API's base URL."""
    await run_module("workers.consumer", settings)
    await run_module("workers.worker", settings)
    _, base = await start_api(run_module, with_settings(settings, **api) if api else settings)
    return base


def log_lines(log: Path, message: str) -> list[dict[str, Any]]:
    lines = (json.loads(line) for line in log.read_text().splitlines() if line.startswith("{"))
    return [line for line in lines if line["message"] == message]


async def test_one_post_is_one_trace_from_the_request_to_the_job(
    pipeline_settings: Settings,
    engine: AsyncEngine,
    collector: Collector,
    run_module: RunModule,
    tmp_path: Path,
) -> None:
    """server → producer (the API's relay) → consumer → process_order, one trace id, with
    the SQL and Redis calls as client spans under them and the log lines carrying the id."""
    settings = traced(pipeline_settings, collector.url)
    base = await start_traced_stack(run_module, settings)

    account, order_id = await post_order(base)

    job = await collector.span_where(name="process_order", order_id=order_id)
    assert (job.service, job.kind) == ("order-worker", "consumer")
    consumer = await parent_of(collector, job)
    assert (consumer.service, consumer.kind, consumer.name) == (
        "order-consumer",
        "consumer",
        "new_order process",
    )
    producer = await parent_of(collector, consumer)
    assert (producer.service, producer.kind, producer.name) == (
        "order-api",
        "producer",
        "new_order publish",
    )
    assert producer.attributes["order.id"] == order_id
    server = await parent_of(collector, producer)
    assert (server.service, server.kind, server.name) == ("order-api", "server", "POST /orders")
    # The trace starts at the request: the client's traceparent chose neither id nor parent.
    assert server.parent_id == ""
    assert server.trace_id not in CLIENT_TRACEPARENT
    assert server.attributes["http.route"] == "/orders"
    assert server.attributes["enduser.id"] == str(account.id)
    assert 201 in (
        server.attributes.get("http.status_code"),
        server.attributes.get("http.response.status_code"),
    )
    # The order_processed event the job staged is published in its trace too (the worker's relay).
    processed_event = await collector.span_where(name="order_processed publish", order_id=order_id)
    assert (await parent_of(collector, processed_event)).span_id == job.span_id

    async def client_spans() -> dict[str, set[str]]:
        """Services → the db systems of the client spans under the request and the job."""
        found: dict[str, set[str]] = {}
        for span in collector.trace(job.trace_id):
            if span.kind == "client" and span.parent_id in (server.span_id, job.span_id):
                system = span.attributes.get("db.system") or span.attributes.get("db.system.name")
                found.setdefault(span.service, set()).add(str(system))
        return found if {"order-api", "order-worker"} <= found.keys() else {}

    systems = await wait_for(client_spans, within=10)
    # Statements and commands are exported without their values: no email, no password.
    exported = repr([span.attributes for span in collector.spans])
    assert account.email not in exported
    assert account.password not in exported
    assert "postgresql" in systems["order-api"]  # the INSERT of the order and its event
    assert {"postgresql", "redis"} <= systems["order-worker"]  # the UPDATE, the cache refresh

    # The log line an operator greps leads to the trace of the POST that created the order.
    assert await processed_at(engine, uuid.UUID(order_id)) is not None
    [processed] = log_lines(tmp_path / "workers.worker.log", f"Order {order_id} processed")
    assert processed["trace_id"] == server.trace_id
    assert processed["span_id"] == job.span_id
    [created] = [
        line
        for line in log_lines(tmp_path / "api.log", "order created")
        if line["order_id"] == order_id
    ]
    assert created["trace_id"] == server.trace_id


async def test_an_order_the_sweeper_publishes_joins_its_trace(
    pipeline_settings: Settings, collector: Collector, run_module: RunModule
) -> None:
    """The API cannot reach RabbitMQ: its relay fails, the worker's sweeper publishes the row
    later, in a producer span under the POST's server span."""
    settings = traced(pipeline_settings, collector.url, outbox_sweep_age_s=0.0)
    broker_down = closed_port_url().replace("http://", "amqp://guest:guest@")
    base = await start_traced_stack(run_module, settings, rabbitmq_url=broker_down)

    _, order_id = await post_order(base)

    job = await collector.span_where(name="process_order", order_id=order_id)
    consumer = await parent_of(collector, job)
    producer = await parent_of(collector, consumer)
    assert (producer.service, producer.kind) == ("order-worker", "producer")  # the sweeper's
    server = await parent_of(collector, producer)
    assert (server.service, server.name) == ("order-api", "POST /orders")


async def test_a_reenqueued_job_links_to_the_orders_trace(
    own_database: Settings, collector: Collector, run_module: RunModule
) -> None:
    """No consumer: the event waits in its queue, the job never comes; the reconciler enqueues
    it in a trace of its own that links to the POST's, which the job continues."""
    settings = traced(own_database, collector.url, reconcile_after_s=0.5, reconcile_interval_s=1)
    await run_module("workers.worker", settings)
    _, base = await start_api(run_module, settings)

    _, order_id = await post_order(base)

    server = await collector.span_where(name="POST /orders", service="order-api")
    job = await collector.span_where(name="process_order", order_id=order_id, within=30)
    reenqueue = await parent_of(collector, job)
    assert (reenqueue.service, reenqueue.kind, reenqueue.name) == (
        "order-worker",
        "producer",
        "process_order reenqueue",
    )
    assert reenqueue.trace_id != server.trace_id
    assert reenqueue.links == [(server.trace_id, server.span_id)]
    db = create_engine(settings)
    try:
        assert await processed_at(db, uuid.UUID(order_id)) is not None
    finally:
        await db.dispose()


async def test_tracing_off_sends_nothing_and_stores_no_context(
    pipeline_settings: Settings,
    engine: AsyncEngine,
    collector: Collector,
    run_module: RunModule,
    tmp_path: Path,
) -> None:
    """OTEL_SDK_DISABLED wins over an endpoint: the order goes through, nothing is exported,
    no row or log line carries a trace, and no process logs an error."""
    settings = traced(pipeline_settings, collector.url, otel_sdk_disabled=True)
    base = await start_traced_stack(run_module, settings)

    _, order_id = await post_order(base)

    await wait_for(lambda: processed_at(engine, uuid.UUID(order_id)), within=20)
    async with engine.connect() as conn:
        contexts = (
            await conn.scalars(
                select(OutboxEvent.trace_context).where(OutboxEvent.order_id == uuid.UUID(order_id))
            )
        ).all()
    assert contexts == [None, None]  # new_order, order_processed: SQL NULL
    time.sleep(0.5)  # noqa: ASYNC251 - past two export intervals; the receiver is a thread
    assert collector.requests == 0
    for log in ("api", "workers.consumer", "workers.worker"):
        text = (tmp_path / f"{log}.log").read_text()
        assert "trace_id" not in text
        assert '"level":"ERROR"' not in text
        assert "Traceback" not in text


@pytest.mark.parametrize("collector_state", ["refusing", "stalled"])
async def test_an_unreachable_collector_loses_spans_never_requests(
    pipeline_settings: Settings,
    engine: AsyncEngine,
    run_module: RunModule,
    collector_state: str,
) -> None:
    """Export runs in a thread of its own: a refused or hung collector neither slows the
    requests nor stops the order's pipeline."""
    stall = Stall()
    endpoint = closed_port_url() if collector_state == "refusing" else stall.url
    try:
        settings = traced(pipeline_settings, endpoint)
        base = await start_traced_stack(run_module, settings)
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            account = await make_account(client)
            slowest = 0.0
            order_ids = []
            for _ in range(20):
                started = time.monotonic()
                order_ids.append((await create_order(client, account))["id"])
                slowest = max(slowest, time.monotonic() - started)
        assert slowest < 1.0, f"a request took {slowest:.2f}s"
        for order_id in order_ids:
            await wait_for(functools.partial(processed_at, engine, uuid.UUID(order_id)), within=30)
    finally:
        stall.close()
