"""The Swagger UI and Stoplight Elements pages, used in a real browser with only loopback open.

Each test ends by checking that the page asked for nothing outside the service's own origin
and hit no Content-Security-Policy violation or script error: that is what "works offline
and under our CSP" means. A screenshot of each page lands in ``screenshots/``.
"""

from __future__ import annotations

import json
import uuid

import httpx
from playwright.async_api import expect

from tests.accounts import PASSWORD
from tests.browser.chromium import Visit

# Rendering swagger-ui or Elements takes a few seconds on a busy 2-core machine.
RENDER_TIMEOUT_MS = 30_000
OPERATIONS = [
    ("post", "/register"),
    ("post", "/token"),
    ("post", "/orders"),
    ("get", "/orders/{order_id}"),
    ("patch", "/orders/{order_id}"),
    ("get", "/orders/user/{user_id}"),
]
NEW_ORDER = {"items": [{"name": "Browser item", "quantity": 3, "price": "12.50"}]}


def assert_stayed_home(visit: Visit) -> None:
    assert visit.foreign_requests == [], "the page reached for another host"
    assert visit.problems == [], "the page logged errors (CSP violations, failed loads)"


async def register(base: str) -> str:
    email = f"browser-{uuid.uuid4().hex[:12]}@example.com"
    async with httpx.AsyncClient(base_url=base) as api:
        created = await api.post("/register", json={"email": email, "password": PASSWORD})
    assert created.status_code == 201, created.text
    return email


async def test_swagger_lists_every_operation(visit: Visit) -> None:
    page = visit.page
    await page.goto(f"{visit.base}/schema/swagger")
    for method, path in OPERATIONS:
        block = page.locator(f".opblock-{method}").filter(
            has=page.locator(f'.opblock-summary-path[data-path="{path}"]')
        )
        await expect(block).to_be_visible(timeout=RENDER_TIMEOUT_MS)
    await visit.screenshot("swagger")
    assert_stayed_home(visit)


async def authorize(visit: Visit) -> str:
    """A new user logged in through Swagger's Authorize dialog (OAuth2 password flow against
    /token) on the Swagger page: the access token it got."""
    page = visit.page
    email = await register(visit.base)
    await page.goto(f"{visit.base}/schema/swagger")

    await page.locator(".auth-wrapper .authorize").click(timeout=RENDER_TIMEOUT_MS)
    dialog = page.locator(".modal-ux")
    await dialog.locator("#oauth_username").fill(email)
    await dialog.locator("#oauth_password").fill(PASSWORD)
    async with page.expect_response(f"{visit.base}/token") as login:
        await dialog.locator(".auth-btn-wrapper .authorize").click()
    assert (await login.value).status == 200
    token: str = (await (await login.value).json())["access_token"]
    await expect(dialog.get_by_role("heading", name="Authorized")).to_be_visible()
    await visit.screenshot("swagger-authorized")
    await dialog.locator(".btn-done").click()
    return token


async def test_swagger_authorize_then_try_it_out_creates_an_order(visit: Visit) -> None:
    """Log in through Swagger's Authorize dialog, then POST /orders with "Try it out" (201)
    and read the order back with GET, all in the page."""
    page = visit.page
    token = await authorize(visit)

    create = page.locator("#operations-orders-createOrder")
    await create.locator(".opblock-summary").click()
    await create.locator(".try-out__btn").click()
    await create.locator(".body-param__text").fill(json.dumps(NEW_ORDER))
    async with page.expect_response(f"{visit.base}/orders") as creation:
        await create.locator(".execute").click()
    created = await creation.value
    assert created.status == 201, await created.text()
    order = await created.json()
    assert order["total_price"] == "37.50"
    await expect(
        create.locator(".live-responses-table tbody .response-col_status")
    ).to_contain_text("201")

    read = page.locator("#operations-orders-getOrder")
    await read.locator(".opblock-summary").click()
    await read.locator(".try-out__btn").click()
    await read.locator('tr[data-param-name="order_id"] input').fill(order["id"])
    async with page.expect_response(f"{visit.base}/orders/{order['id']}") as reading:
        await read.locator(".execute").click()
    shown = await reading.value
    assert shown.status == 200
    assert (await shown.json())["id"] == order["id"]
    await expect(read.locator(".live-responses-table tbody .response-col_status")).to_contain_text(
        "200"
    )
    async with httpx.AsyncClient(base_url=visit.base) as api:  # and to any client, as the owner
        listed = await api.get(
            f"/orders/user/{order['user_id']}", headers={"Authorization": f"Bearer {token}"}
        )
    assert [listed_order["id"] for listed_order in listed.json()] == [order["id"]]
    await read.locator(".live-responses-table").scroll_into_view_if_needed()
    await visit.screenshot("swagger-try-it-out", full_page=False)
    assert_stayed_home(visit)


async def test_swagger_try_it_out_starts_from_the_walkthrough_example(visit: Visit) -> None:
    """The document's example fills the body: "Execute" unedited creates the README's order."""
    page = visit.page
    await authorize(visit)
    create = page.locator("#operations-orders-createOrder")
    await create.locator(".opblock-summary").click()
    await create.locator(".try-out__btn").click()
    async with page.expect_response(f"{visit.base}/orders") as creation:
        await create.locator(".execute").click()
    created = await creation.value
    assert created.status == 201, await created.text()
    order = await created.json()
    assert (order["items"], order["total_price"]) == (
        [{"name": "Item 1", "quantity": 2, "price": "100.50"}],
        "201.00",
    )
    assert_stayed_home(visit)


async def test_elements_lists_the_operations(visit: Visit) -> None:
    page = visit.page
    await page.goto(f"{visit.base}/schema/elements")
    sidebar = page.locator(".sl-elements-api")
    for tag, summaries in [
        ("users", ["Register a user", "Log in (OAuth2 password flow)"]),
        ("orders", ["Create an order", "Get one of your orders", "List your orders"]),
    ]:
        await sidebar.get_by_text(tag, exact=True).click(timeout=RENDER_TIMEOUT_MS)
        for summary in summaries:
            await expect(sidebar.get_by_text(summary, exact=True).first).to_be_visible()
    await visit.screenshot("elements")
    assert_stayed_home(visit)


async def test_elements_shows_the_order_schema(visit: Visit) -> None:
    page = visit.page
    await page.goto(f"{visit.base}/schema/elements#/schemas/OrderView")
    main = page.locator(".sl-elements-api")
    await expect(main.get_by_role("heading", name="OrderView")).to_be_visible(
        timeout=RENDER_TIMEOUT_MS
    )
    for field in ["total_price", "status", "processed_at", "items"]:
        await expect(main.get_by_text(field, exact=True).first).to_be_visible()
    await visit.screenshot("elements-order-schema")
    assert_stayed_home(visit)
