"""A Python client generated from the served document (openapi-python-client, offline, failing
on any warning), driving the real service under uvicorn end to end as a client's user would:
typed answers, error answers included.

Generated once per module into a temporary folder and imported from there (the code is the
generator's, so the test reaches it through ``Any``).
"""

from __future__ import annotations

import importlib
import sys
import uuid
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from tests.accounts import PASSWORD
from tools.openapi import generate_client

PACKAGE = "order_service_client"


class Generated:
    """The generated package's modules by dotted name: ``generated.api("orders.get_order")``."""

    def __init__(self, package: str) -> None:
        self.package = package

    def module(self, name: str) -> Any:
        loaded: ModuleType = importlib.import_module(f"{self.package}.{name}")
        return loaded

    def api(self, name: str) -> Any:
        return self.module(f"api.{name}")

    @property
    def models(self) -> Any:
        return self.module("models")


@pytest.fixture(scope="module")
async def generation(
    live: httpx.AsyncClient, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str]:
    """The generator run on what the running service serves: (package folder, its output)."""
    document = (await live.get("/schema/openapi.json")).json()
    folder = tmp_path_factory.mktemp("generated") / PACKAGE
    result = generate_client(document, folder)
    assert result.returncode == 0, result.stdout + result.stderr
    return folder, result.stdout + result.stderr


@pytest.fixture(scope="module")
def generated(generation: tuple[Path, str]) -> Iterator[Generated]:
    folder, _ = generation
    sys.path.insert(0, str(folder.parent))
    try:
        yield Generated(PACKAGE)
    finally:
        sys.path.remove(str(folder.parent))
        for name in [name for name in sys.modules if name.split(".")[0] == PACKAGE]:
            del sys.modules[name]


def test_the_generator_has_no_warning_and_clean_names(generation: tuple[Path, str]) -> None:
    folder, output = generation
    assert "warning" not in output.lower(), output
    functions = sorted(
        f"{path.parent.name}.{path.stem}"
        for path in (folder / "api").glob("*/*.py")
        if path.stem != "__init__"
    )
    assert functions == [
        "ops.health",
        "ops.ready",
        "orders.create_order",
        "orders.get_order",
        "orders.list_user_orders",
        "orders.patch_order",
        "orders.stream_order_events",
        "users.delete_me",
        "users.get_jwks",
        "users.get_me",
        "users.register",
        "users.revoke_token",
        "users.token",
    ]


async def test_a_generated_client_drives_the_service_end_to_end(
    live: httpx.AsyncClient, generated: Generated
) -> None:
    async with AsyncExitStack() as stack:  # the clients' connections closed at the end
        await drive_end_to_end(stack, str(live.base_url), generated)


async def drive_end_to_end(stack: AsyncExitStack, base_url: str, generated: Generated) -> None:
    """register → token → create → get (HIT) → patch → list → a refused move (409, typed) →
    404 → me, with error answers parsed as the generated models."""
    models = generated.models
    client_module = generated.module("client")
    anonymous = await stack.enter_async_context(client_module.Client(base_url=base_url))
    email = f"gen-{uuid.uuid4().hex[:12]}@example.com"

    # register → token, with no token at all (public routes ask none)
    register = generated.api("users.register")
    created = await register.asyncio_detailed(
        client=anonymous, body=models.RegisterRequest(email=email, password=PASSWORD)
    )
    assert created.status_code == 201
    assert isinstance(created.parsed, models.UserView)
    assert created.parsed.email == email
    taken = await register.asyncio_detailed(
        client=anonymous, body=models.RegisterRequest(email=email, password=PASSWORD)
    )
    assert taken.status_code == 409
    assert isinstance(taken.parsed, models.ErrorBody)
    assert taken.parsed.status_code == 409
    invalid = await register.asyncio_detailed(
        client=anonymous, body=models.RegisterRequest(email="not-an-address", password=PASSWORD)
    )
    assert invalid.status_code == 422
    assert isinstance(invalid.parsed, models.ErrorBody)
    assert invalid.parsed.field == "email"
    [reason] = invalid.parsed.errors
    assert isinstance(reason, models.FieldError)
    assert (reason.field, reason.source) == ("email", "body")

    login = await generated.api("users.token").asyncio_detailed(
        client=anonymous, body=models.TokenForm(username=email, password=PASSWORD)
    )
    assert login.status_code == 200
    assert isinstance(login.parsed, models.TokenResponse)
    authed = await stack.enter_async_context(
        client_module.AuthenticatedClient(base_url=base_url, token=login.parsed.access_token)
    )

    # create → get (a HIT: written through) → patch → list
    order = await generated.api("orders.create_order").asyncio_detailed(
        client=authed,
        body=models.CreateOrderRequest(
            items=[models.NewItem(name="Item 1", quantity=2, price="100.50")],
            total_price="201.00",
        ),
        idempotency_key=f"gen-{uuid.uuid4()}",
    )
    assert order.status_code == 201
    assert isinstance(order.parsed, models.OrderView)
    order_id = order.parsed.id
    assert order.headers["location"] == f"/orders/{order_id}"
    assert (order.parsed.total_price, order.parsed.status) == ("201.00", models.OrderStatus.PENDING)

    get_order = generated.api("orders.get_order")
    read = await get_order.asyncio_detailed(order_id, client=authed)
    assert read.status_code == 200
    assert read.headers["x-cache"] == "HIT"
    assert isinstance(read.parsed, models.OrderView)
    assert read.parsed.id == order_id

    patch_order = generated.api("orders.patch_order")
    paid = await patch_order.asyncio_detailed(
        order_id, client=authed, body=models.PatchOrderRequest(status=models.OrderStatus.PAID)
    )
    assert paid.status_code == 200
    assert isinstance(paid.parsed, models.OrderView)
    assert paid.parsed.status == models.OrderStatus.PAID

    listed = await generated.api("orders.list_user_orders").asyncio_detailed(
        created.parsed.id, client=authed, limit=10
    )
    assert listed.status_code == 200
    assert [(o.id, o.status) for o in listed.parsed] == [(order_id, models.OrderStatus.PAID)]

    # the refused move, typed with the status the order has; a missing order
    refused = await patch_order.asyncio_detailed(
        order_id, client=authed, body=models.PatchOrderRequest(status=models.OrderStatus.PENDING)
    )
    assert refused.status_code == 409
    assert isinstance(refused.parsed, models.StatusConflict)
    assert refused.parsed.current_status == models.OrderStatus.PAID
    missing = await get_order.asyncio_detailed(uuid.uuid4(), client=authed)
    assert missing.status_code == 404
    assert isinstance(missing.parsed, models.ErrorBody)

    # me; and without a token, a typed 401
    get_me = generated.api("users.get_me")
    me = await get_me.asyncio_detailed(client=authed)
    assert me.status_code == 200
    assert isinstance(me.parsed, models.UserView)
    assert (me.parsed.id, me.parsed.email) == (created.parsed.id, email)
    nobody = await get_me.asyncio_detailed(client=anonymous)
    assert nobody.status_code == 401
    assert isinstance(nobody.parsed, models.ErrorBody)

    # log out with the anonymous client: revoking asks no token either
    revoked = await generated.api("users.revoke_token").asyncio_detailed(
        client=anonymous, body=models.RevokeForm(token=login.parsed.refresh_token)
    )
    assert revoked.status_code == 200
