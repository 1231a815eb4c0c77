"""Debian's chromium as the tests run it, and one page visit with what it tried to reach."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from playwright.async_api import Page

from tools.harness.names import ROOT

CHROMIUM = shutil.which("chromium")
# Written by every run for a person to look at; git-ignored.
SCREENSHOTS = ROOT / "screenshots"
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
