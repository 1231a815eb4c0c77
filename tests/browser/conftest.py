"""A real browser (Debian's chromium, headless, driven by Playwright) against a live API process.

The browser may reach the API's loopback origin and nothing else: every other request is
aborted and recorded, and the browser resolves no host name at all, so a page that renders
here renders without internet access. Tests skip only where chromium is not installed
(.ci/run installs it, so CI never skips them).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Route,
    async_playwright,
)

from shared.settings import Settings
from tests.browser.chromium import CHROMIUM, CHROMIUM_FLAGS, Visit
from tests.processes import running_modules, start_api


@pytest.fixture(scope="package")
async def live_api(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """The API as deployed (uvicorn, its own process) on a free loopback port: its base URL."""
    async with running_modules(tmp_path_factory.mktemp("browser")) as run:
        _, base = await start_api(run, settings)
        yield base


@pytest.fixture(scope="package")
async def browser() -> AsyncIterator[Browser]:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    async with async_playwright() as playwright:
        # A fresh, empty profile per launch (Playwright makes and removes its user-data-dir).
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS
        )
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def visit(browser: Browser, live_api: str) -> AsyncIterator[Visit]:
    context: BrowserContext = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    seen = Visit(page, live_api)
    own_origin = urlsplit(live_api)[:2]

    async def only_own_origin(route: Route) -> None:
        url = route.request.url
        if urlsplit(url)[:2] == own_origin:
            await route.continue_()
        else:
            seen.foreign_requests.append(url)
            await route.abort("blockedbyclient")

    def on_console(message: ConsoleMessage) -> None:
        # CSP violations and failed loads are reported on the console, before any request.
        if message.type == "error":
            seen.problems.append(message.text)

    await context.route("**/*", only_own_origin)
    page.on("console", on_console)
    page.on("pageerror", lambda error: seen.problems.append(f"page error: {error}"))
    try:
        yield seen
    finally:
        await context.close()
