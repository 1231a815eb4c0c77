"""A real browser (Debian's chromium, headless, driven by Playwright) against a live API process.

The browser may reach the API's loopback origin and nothing else: every other request is
aborted and recorded, and the browser resolves no host name at all, so a page that renders
here renders without internet access. Tests skip only where chromium is not installed
(.ci/run installs it, so CI never skips them).
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Route,
    async_playwright,
)

from shared.settings import Settings
from tests.processes import PROJECT_ROOT, running_modules, start_api

CHROMIUM = shutil.which("chromium")
# Written by every run for a person to look at; git-ignored.
SCREENSHOTS = PROJECT_ROOT / "screenshots"
CHROMIUM_FLAGS = [
    "--no-sandbox",  # root in a container: chromium's sandbox needs user namespaces
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # No name resolves: even a request that escaped interception could not leave the machine.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]


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


@dataclass
class Visit:
    """One page in its own browser context, with what it tried that it should not have."""

    page: Page
    base: str
    foreign_requests: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    async def screenshot(self, name: str, *, full_page: bool = True) -> Path:
        SCREENSHOTS.mkdir(exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        await self.page.screenshot(path=path, full_page=full_page)
        return path


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
