"""GET /health and /ready: liveness, readiness that names what is down, and the OpenAPI schema
that describes both."""

from __future__ import annotations

import time

import pytest

from app import create_app
from shared.services import services_of
from shared.settings import Settings
from tests.apps import StartApp, unreachable
from tests.orders import Client


async def test_openapi_says_health_and_readiness_need_no_token(client: Client) -> None:
    """Found by tests/hardening/test_schemathesis.py: both inherited the bearer requirement."""
    paths = (await client.get("/schema/openapi.json")).json()["paths"]
    assert paths["/health"]["get"]["security"] == []
    assert paths["/ready"]["get"]["security"] == []


async def test_openapi_documents_the_503_of_readiness(client: Client) -> None:
    """Found by tests/hardening/test_schemathesis.py: /ready's 503 was undocumented."""
    ready = (await client.get("/schema/openapi.json")).json()["paths"]["/ready"]["get"]
    schema = ready["responses"]["503"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/Readiness"}


@pytest.mark.parametrize("path", ["/health", "/health/"])
async def test_health_is_200(client: Client, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.parametrize("path", ["/ready", "/ready/"])
async def test_ready_is_200_when_every_dependency_answers(client: Client, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"] == {"postgresql": "ok", "redis": "ok", "rabbitmq": "ok"}


async def test_ready_is_200_on_every_app_instance_of_a_process(
    settings: Settings, start_app: StartApp
) -> None:
    another = create_app(settings)
    another_client = await start_app(another)
    assert await services_of(another).bus.wait_ready(within=10)
    response = await another_client.get("/ready")
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("dependency", ["postgresql", "redis", "rabbitmq"])
async def test_ready_is_503_naming_the_dependency_that_is_down(
    settings: Settings, start_app: StartApp, dependency: str
) -> None:
    broken = await start_app(create_app(unreachable(settings, dependency)))
    started = time.monotonic()
    response = await broken.get("/ready")
    elapsed = time.monotonic() - started
    assert response.status_code == 503
    body = response.json()
    assert body["checks"][dependency].startswith("down")
    assert dependency in body["detail"]
    assert elapsed < 5


async def test_ready_503_names_only_what_is_down(settings: Settings, start_app: StartApp) -> None:
    broken_app = create_app(unreachable(settings, "redis"))
    broken = await start_app(broken_app)
    assert await services_of(broken_app).bus.wait_ready(within=10)
    response = await broken.get("/ready")
    assert response.status_code == 503
    assert response.json()["checks"] == {
        "postgresql": "ok",
        "redis": response.json()["checks"]["redis"],
        "rabbitmq": "ok",
    }
    assert response.json()["detail"] == "down: redis"
